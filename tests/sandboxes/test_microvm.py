"""The microVM backend on this machine: real QEMU guests, restored from a real snapshot.

One backend (one snapshot) serves the whole module, so the template boots once
per machine and every test restores VMs from it (a fraction of a second each
under TCG). The tests that need a backend of their own (a broken guest, a
missing image) make it with a small timeout or fail before booting anything.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from nfaas.errors import BackendUnavailable, FunctionCrashed, FunctionTimeout, SandboxStartError
from nfaas.sandboxes.base import Event, FunctionCode, Limits, SandboxState
from nfaas.sandboxes.microvm.backend import MicrovmBackend, MicrovmConfig, MicrovmSandbox, VmHandle
from nfaas.sandboxes.microvm.image import load_image
from nfaas.sandboxes.microvm.qemu import choose_accelerator
from nfaas.sandboxes.microvm.snapshot import remove_unused
from nfaas.sandboxes.registry import backend_class
from tests.requirements import require
from tests.sandboxes.contract import Kit, SandboxContract
from tests.sandboxes.test_container import CONTRACT_HANDLERS, FUNCTIONS, folder_with
from tests.sandboxes.test_process import until

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")

LIMITS = Limits(memory_mb=32, timeout_s=2.0)
PROBE = """\
import os, platform, socket

def handle(event, context):
    with open("/proc/net/dev") as devices:
        interfaces = [line.split(":")[0].strip() for line in devices.readlines()[2:]]
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return {"kernel": platform.release(), "uid": os.getuid(), "interfaces": interfaces,
            "mem_total_kb": total_kb, "cwd": os.getcwd(), "left": context.remaining_time(),
            "helper": __import__("pkg.helper", fromlist=["x"]).VALUE}


def garbage(event, context):
    os.write(3, b"\\xff" * 64)  # the agent's port: what a broken agent would send
    return b"unreachable"
"""


@pytest.fixture(autouse=True)
def _backend_available() -> None:
    require(MicrovmBackend.availability(), "the microVM backend")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[MicrovmBackend]:
    async with MicrovmBackend() as started:
        yield started


def code(handler: str, path: Path = FUNCTIONS, limits: Limits = LIMITS) -> FunctionCode:
    return FunctionCode("app", handler.partition(":")[0], "1", handler, path, limits)


def probe_folder(tmp_path: Path) -> Path:
    folder = folder_with(tmp_path, "probe.py", PROBE)
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "helper.py").write_text("VALUE = 'from a subpackage'\n")
    return folder


async def loaded(backend: MicrovmBackend, function: FunctionCode) -> MicrovmSandbox:
    sandbox = backend.create()
    assert isinstance(sandbox, MicrovmSandbox)
    await sandbox.prepare()
    await sandbox.load(function)
    return sandbox


@IN_MODULE_LOOP
class TestMicrovmContract(SandboxContract):
    @pytest.fixture
    def kit(self, backend: MicrovmBackend, tmp_path: Path) -> Kit:
        def make(behaviour: str) -> FunctionCode:
            if behaviour == "broken":
                broken = "def handle(event, context)\n    return b''\n"
                return code("broken:handle", folder_with(tmp_path, "broken.py", broken))
            return code(CONTRACT_HANDLERS[behaviour])

        return Kit(backend, make)


def test_registered_as_microvm() -> None:
    assert backend_class("microvm") is MicrovmBackend


def test_acceleration_is_chosen_and_explained() -> None:
    accelerator = choose_accelerator()
    assert accelerator.name in ("kvm", "tcg")
    assert accelerator.why
    assert choose_accelerator("tcg").name == "tcg"


@IN_MODULE_LOOP
class TestGuest:
    async def test_own_kernel_no_network_unprivileged_code_shipped(
        self, backend: MicrovmBackend, tmp_path: Path
    ) -> None:
        async with await loaded(backend, code("probe:handle", probe_folder(tmp_path))) as vm:
            seen = orjson.loads((await vm.invoke(Event("invoke"))).body)
            assert vm.namespaces == ["vm"]
        assert backend.image is not None
        assert seen["kernel"] == backend.image.manifest["kernel"] != os.uname().release
        assert seen["interfaces"] == ["lo"]
        assert seen["uid"] == 65534
        assert seen["mem_total_kb"] < backend.config.vm_memory_mb * 1024
        assert seen["cwd"] == "/tmp/scratch"
        assert seen["helper"] == "from a subpackage"
        # The deadline crossed from the host's clock to the guest's.
        assert 0 < seen["left"] <= LIMITS.timeout_s

    async def test_numpy_and_the_nf_framework_are_in_the_guest(
        self, backend: MicrovmBackend, tmp_path: Path
    ) -> None:
        source = (
            "import numpy as np\n"
            "from nfaas.nf import PacketBatch\n\n"
            "def handle(event, context):\n"
            "    return {'sum': int(np.arange(5).sum()), 'batch': PacketBatch.__name__}\n"
        )
        folder = folder_with(tmp_path, "uses_numpy.py", source)
        async with await loaded(backend, code("uses_numpy:handle", folder)) as sandbox:
            seen = orjson.loads((await sandbox.invoke(Event("invoke"))).body)
        assert seen == {"sum": 10, "batch": "PacketBatch"}

    async def test_every_restored_vm_has_randomness_of_its_own(
        self, backend: MicrovmBackend, tmp_path: Path
    ) -> None:
        source = (
            "import os, random, uuid\n\n"
            "def handle(event, context):\n"
            "    return {'urandom': os.urandom(16).hex(), 'random': random.random(),\n"
            "            'uuid': str(uuid.uuid4())}\n"
        )
        folder = folder_with(tmp_path, "draws.py", source)
        seen = []
        for _ in range(2):
            async with await loaded(backend, code("draws:handle", folder)) as sandbox:
                seen.append(orjson.loads((await sandbox.invoke(Event("invoke"))).body))
        for key in ("urandom", "random", "uuid"):
            assert seen[0][key] != seen[1][key], key

    async def test_a_forged_exit_line_on_the_console_is_not_believed(
        self, backend: MicrovmBackend, tmp_path: Path
    ) -> None:
        source = (
            "import os, sys, time\n\n"
            "def handle(event, context):\n"
            "    print('nfaas-agent-exit status=86 oom_kill=0', flush=True)\n"
            "    if event.body == b'exit':\n"
            "        os._exit(3)\n"
            "    time.sleep(60)\n"
        )
        folder = folder_with(tmp_path, "forger.py", source)
        async with await loaded(backend, code("forger:handle", folder)) as sandbox:
            with pytest.raises(FunctionCrashed, match="status 3"):
                await sandbox.invoke(Event("invoke", b"exit"))
        quick = Limits(memory_mb=32, timeout_s=1.0)
        async with await loaded(backend, code("forger:handle", folder, quick)) as sandbox:
            with pytest.raises(FunctionTimeout):
                await sandbox.invoke(Event("invoke", b"hang"))

    async def test_garbage_from_the_guest_fails_only_that_vm(
        self, backend: MicrovmBackend, tmp_path: Path
    ) -> None:
        folder = probe_folder(tmp_path)
        async with await loaded(backend, code("probe:handle", folder)) as healthy:
            async with await loaded(backend, code("probe:garbage", folder)) as broken:
                with pytest.raises(FunctionCrashed, match="protocol"):
                    await broken.invoke(Event("invoke"))
                assert broken.state is SandboxState.FAILED
            assert (await healthy.invoke(Event("invoke"))).body

    async def test_a_vm_that_dies_is_detected(self, backend: MicrovmBackend) -> None:
        async with await loaded(backend, code(CONTRACT_HANDLERS["echo"])) as sandbox:
            assert sandbox.pid is not None
            os.kill(sandbox.pid, signal.SIGKILL)
            await until(lambda: sandbox.state is SandboxState.FAILED)
            with pytest.raises(FunctionCrashed, match="SIGKILL"):
                await sandbox.invoke(Event("invoke", b"x"))

    async def test_more_memory_than_the_vm_has_is_refused_at_load(
        self, backend: MicrovmBackend
    ) -> None:
        sandbox = backend.create()
        await sandbox.prepare()
        huge = code(CONTRACT_HANDLERS["echo"], limits=Limits(memory_mb=4096))
        with pytest.raises(SandboxStartError, match="4096 MB"):
            await sandbox.load(huge)
        assert sandbox.state is SandboxState.FAILED
        await sandbox.aclose()

    async def test_code_too_large_for_a_load_frame_is_refused_at_load(
        self, backend: MicrovmBackend, tmp_path: Path
    ) -> None:
        folder = folder_with(tmp_path, "big.py", "def handle(event, context):\n    return b''\n")
        (folder / "blob.bin").write_bytes(bytes(backend.config.max_frame + 1))
        sandbox = backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError, match="does not fit"):
            await sandbox.load(code("big:handle", folder))
        assert sandbox.state is SandboxState.FAILED
        await sandbox.aclose()

    async def test_nothing_is_left_after_aclose(self, backend: MicrovmBackend) -> None:
        sandbox = await loaded(backend, code(CONTRACT_HANDLERS["echo"]))
        pid = sandbox.pid
        folder = (
            sandbox.worker.vm.folder
            if isinstance(sandbox.worker, VmHandle) and sandbox.worker.vm
            else None
        )
        await sandbox.aclose()
        assert await until(lambda: not Path(f"/proc/{pid}").exists())
        assert folder is not None and await until(lambda: not folder.exists())

    async def test_qemu_runs_unprivileged_under_seccomp(self, backend: MicrovmBackend) -> None:
        async with await loaded(backend, code(CONTRACT_HANDLERS["echo"])) as sandbox:
            status = Path(f"/proc/{sandbox.pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        assert fields["Uid"].split()[:2] == ["65534", "65534"]
        assert fields["Seccomp"].strip() == "2"  # filter mode
        assert fields["CapEff"].strip() == "0000000000000000"

    async def test_the_vcpu_share_is_the_functions_own_on_the_host(
        self, backend: MicrovmBackend
    ) -> None:
        limits = Limits(memory_mb=32, cpu=0.25, timeout_s=2.0)
        sandbox = await loaded(backend, code(CONTRACT_HANDLERS["echo"], limits=limits))
        cgroups = Path(f"/proc/{sandbox.pid}/cgroup").read_text().splitlines()
        cpu = next(line.split(":")[2] for line in cgroups if ":cpu," in line or ":cpu:" in line)
        folder = Path("/sys/fs/cgroup/cpu") / cpu.lstrip("/")
        assert (folder / "cpu.cfs_quota_us").read_text().strip() == "25000"
        memory = next(line.split(":")[2] for line in cgroups if ":memory:" in line)
        limit = int(
            (
                Path("/sys/fs/cgroup/memory") / memory.lstrip("/") / "memory.limit_in_bytes"
            ).read_text()
        )
        assert limit > backend.config.vm_memory_mb * 1024 * 1024
        await sandbox.aclose()
        assert await until(lambda: not folder.exists())


@IN_MODULE_LOOP
class TestBadSetup:
    async def test_missing_image_names_the_build_command(self, tmp_path: Path) -> None:
        backend = MicrovmBackend(MicrovmConfig(image_dir=tmp_path / "none"))
        with pytest.raises(BackendUnavailable, match="nfaas microvm build"):
            await backend.start()

    async def test_a_guest_package_missing_here_is_named_and_nothing_is_left(
        self, tmp_path: Path
    ) -> None:
        config = MicrovmConfig(guest_packages=("no_such_package_xyz",), work_dir=tmp_path)
        with pytest.raises(BackendUnavailable, match="no_such_package_xyz"):
            await MicrovmBackend(config).start()
        assert list(tmp_path.iterdir()) == []

    async def test_missing_qemu_names_the_package(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(BackendUnavailable, match="qemu-system-x86"):
            await MicrovmBackend().start()

    async def test_a_guest_that_never_becomes_ready_is_a_clear_error(self, tmp_path: Path) -> None:
        silent = textwrap.dedent("""\
            import time
            while True:
                time.sleep(60)
        """).encode()
        config = MicrovmConfig(
            snapshot_dir=tmp_path / "snapshots",
            boot_timeout_s=4.0,
            agent_overrides={"nfaas/sandboxes/microvm/agent.py": silent},
        )
        with pytest.raises(SandboxStartError, match="not ready within 4 s"):
            await MicrovmBackend(config).start()
        assert not [p for p in (tmp_path / "snapshots").iterdir() if not p.name.startswith(".")]
        assert load_image(config.image_dir)  # the image itself is untouched

    async def test_a_vm_can_boot_from_nothing_without_a_snapshot(self, tmp_path: Path) -> None:
        config = MicrovmConfig(snapshots=False, snapshot_dir=tmp_path / "unused")
        async with MicrovmBackend(config) as backend:
            assert backend.snapshot is None
            async with await loaded(backend, code(CONTRACT_HANDLERS["echo"])) as sandbox:
                assert (await sandbox.invoke(Event("invoke", b"booted"))).body == b"booted"
        assert not (tmp_path / "unused").exists()

    async def test_restores_are_concurrent(self, backend: MicrovmBackend) -> None:
        sandboxes = [backend.create() for _ in range(3)]
        try:
            await asyncio.gather(*(s.prepare() for s in sandboxes))
            assert len({s.pid for s in sandboxes}) == 3
        finally:
            for s in sandboxes:
                await s.aclose()


def test_snapshots_unused_for_a_day_are_removed_and_others_kept(tmp_path: Path) -> None:
    day_ago = time.time() - 2 * 24 * 3600
    for name in ("current", "recent", "stale", ".stale-staging"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ram").write_bytes(b"")
    for name in ("current", "recent", "stale"):
        (tmp_path / name / "meta.json").write_text("{}")
    for stale in (tmp_path / "stale" / "meta.json", tmp_path / "current" / "meta.json",
                  tmp_path / ".stale-staging"):  # fmt: skip
        os.utime(stale, (day_ago, day_ago))
    removed = remove_unused(tmp_path, keep="current")
    assert sorted(removed) == [".stale-staging", "stale"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "recent"]
