from __future__ import annotations

import pytest

from nfaas.errors import DescriptorError
from nfaas.packages.definitions import MAX_DESCRIPTOR_BYTES, load_descriptor, load_yaml
from nfaas.packages.descriptors import ApplicationDescriptor, FunctionDescriptor
from tests.packages.kit import APP_YAML, HELLO_YAML


def test_loads_either_kind() -> None:
    assert isinstance(load_descriptor(APP_YAML.encode(), "a.yaml"), ApplicationDescriptor)
    assert isinstance(load_descriptor(HELLO_YAML.encode(), "f.yaml"), FunctionDescriptor)


def test_byte_order_mark_is_accepted() -> None:
    assert load_yaml(b"\xef\xbb\xbfkind: x\n", "f.yaml") == {"kind": "x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a: [1\n", r"f.yaml line 2 column 1: invalid YAML"),
        (b"a: &x [1]\nb: *x\n", r"f.yaml line 2 column 4: invalid YAML: aliases"),
        (b"a: 1\nb: 2\na: 3\n", r"f.yaml line 3 column 1: invalid YAML: duplicate key 'a'"),
        (b"? [a]\n: b\n", r"invalid YAML: found unhashable key"),
        pytest.param(
            b"a: " + b"[" * 200,
            r"line 1 column 67: invalid YAML: nested more than 64",
            id="deep",
        ),
        (b"\xff\xfe", r"f.yaml: not UTF-8"),
        (b"just text", r"must be a YAML mapping, not str"),
        (b"", r"must be a YAML mapping, not NoneType"),
    ],
)
def test_bad_yaml(data: bytes, message: str) -> None:
    with pytest.raises(DescriptorError, match=message) as info:
        load_yaml(data, "f.yaml")
    assert info.value.file == "f.yaml"


def test_oversized_descriptor() -> None:
    with pytest.raises(DescriptorError, match=r"over 1048576"):
        load_yaml(b"#" * (MAX_DESCRIPTOR_BYTES + 1), "f.yaml")


def test_literal_given_as_a_number_gets_a_hint() -> None:
    data = HELLO_YAML.replace('descriptor_version: "1.0"', "descriptor_version: 1.0").encode()
    with pytest.raises(DescriptorError) as info:
        load_descriptor(data, "f.yaml")
    assert info.value.errors[0]["loc"] == "descriptor_version"
    assert "quote" in info.value.errors[0]["msg"]


def test_model_rule_has_an_empty_location() -> None:
    data = HELLO_YAML.replace("port: 9001", "port: 9001\n  - {type: udp, port: 9001}").encode()
    with pytest.raises(DescriptorError, match=r"the same port is bound twice") as info:
        load_descriptor(data, "f.yaml")
    assert info.value.errors == [{"loc": "", "msg": "the same port is bound twice"}]
