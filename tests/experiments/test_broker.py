"""The broker VNF in its sandbox forms: reachable, confined, measured, and gone after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nfaas.errors import ExperimentError
from nfaas.experiments.broker import BROKER_UID, ProcessBroker, make_broker
from nfaas.experiments.broker_container import ContainerBroker
from nfaas.sandboxes.container import ContainerBackend
from tests.experiments.conftest import broker_containers
from tests.requirements import require


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def test_the_process_form_runs_confined_as_its_own_user() -> None:
    async with ProcessBroker() as broker:
        assert broker.process is not None
        status = _status(broker.process.pid)
        if os.geteuid() == 0:
            assert status["Uid"].split()[0] == str(BROKER_UID)
            assert status["CapEff"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1"
        assert broker.usage().memory_bytes > 0
        work = broker.work
    assert not work.exists()
    await broker.aclose()  # idempotent


async def test_the_container_form_is_reachable_and_deleted_after() -> None:
    require(ContainerBackend.availability(), "the container form of the broker")
    async with ContainerBroker() as broker:
        assert broker_containers() == [broker.container_id]
        assert broker.cgroup.pids_in()
        assert broker.usage().memory_bytes > 0
    assert broker_containers() == []
    assert not broker.cgroup.exists()


@pytest.mark.parametrize("form", ["microvm", "wasm"])
def test_forms_that_cannot_host_a_server_say_why(form: str) -> None:
    with pytest.raises(ExperimentError, match=r"network device|no sockets"):
        make_broker(form)
