"""Experiment 1 on the microVM backend, with one VM at a time (restored from the snapshot)."""

from __future__ import annotations

from pathlib import Path

from nfaas.experiments.footprint import level_mb, measure_backend
from nfaas.experiments.profiles import FootprintProfile
from nfaas.sandboxes.microvm.backend import MicrovmBackend
from tests.experiments.conftest import child_pids_named
from tests.requirements import require


async def test_a_microvm_deployment_is_timed_and_its_memory_traced(tmp_path: Path) -> None:
    require(MicrovmBackend.availability(), "the microVM footprint")
    prof = FootprintProfile(("microvm",), 1, 1, 0, 1, 0.02, 0.05)
    result = await measure_backend("microvm", prof, tmp_path)
    (boot,) = result["boots"]
    assert 0 < boot["wall_ms"] < 15_000 and boot["cpu_ms"] > 0
    trace = result["traces"]["deploy+invoke"][0]
    assert level_mb(trace["samples"], trace["invoked_s"]) > 1  # QEMU's cgroup was read
    assert child_pids_named("qemu") == []
