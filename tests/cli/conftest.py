"""Fixtures the CLI tests share with the tests of the packages they drive."""

from tests.ebpf.conftest import veth_pair

__all__ = ["veth_pair"]
