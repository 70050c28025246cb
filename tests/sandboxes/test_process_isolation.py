"""What a function cannot do when the platform runs as root (``confinement.Confinement``).

The function's code is unpacked by the real blob store into a data folder laid
out as the platform's own (state database, operator token, code under
``functions/<app>/<name>/<version>-<tree>``), and every attempt is made from
inside a real worker; each handler reports what it got, and the test says what
it should have got.
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import resource
import signal
import sqlite3
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from nfaas.catalog.blobs import BlobStore
from nfaas.errors import (
    BackendUnavailable,
    FunctionCrashed,
    FunctionTimeout,
    SandboxStartError,
)
from nfaas.sandboxes.base import Event, FunctionCode, Limits, SandboxState
from nfaas.sandboxes.confinement import Confinement
from nfaas.sandboxes.process import ProcessBackend, ProcessConfig, ProcessSandbox
from tests.sandboxes.test_process import alive, until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workers are confined only under root")

PROBE = textwrap.dedent(
    '''
    import ctypes
    import os
    import resource
    import signal
    import sqlite3

    HERE = os.path.dirname(__file__)


    def attempt(action):
        try:
            return {"ok": True, "value": action()}
        except (OSError, ValueError, sqlite3.Error) as exc:
            return {"ok": False, "type": type(exc).__name__, "errno": getattr(exc, "errno", None)}


    def read(event, context):
        return attempt(lambda: len(open(event.text(), "rb").read()))


    def read_from_code(event, context):
        """A path relative to the code folder, '..' and all."""
        return attempt(lambda: len(open(os.path.join(HERE, event.text()), "rb").read()))


    def query(event, context):
        def run():
            db = sqlite3.connect(f"file:{event.text()}?mode=ro", uri=True)
            return db.execute("select token from secrets").fetchall()
        return attempt(run)


    def write(event, context):
        def run():
            with open(event.text(), "w") as f:
                f.write("written by a function")
        return attempt(run)


    def write_in_code(event, context):
        def run():
            with open(os.path.join(HERE, "dropped.py"), "w") as f:
                f.write("x = 1")
        return attempt(run)


    def scratch(event, context):
        path = os.path.join(os.environ["TMPDIR"], "scratch.txt")
        with open(path, "w") as f:
            f.write("mine")
        folder = os.stat(os.environ["TMPDIR"])
        return {
            "tmpdir": os.environ["TMPDIR"],
            "home": os.environ["HOME"],
            "cwd": os.getcwd(),
            "read_back": open("scratch.txt").read(),
            "owner": folder.st_uid,
            "mode": folder.st_mode & 0o777,
        }


    def big_file(event, context):
        def run():
            with open(os.path.join(os.environ["TMPDIR"], "big"), "wb") as f:
                f.write(b"x" * int(event.text()))
        return attempt(run)


    def raise_limit(event, context):
        which = getattr(resource, event.text())
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        return attempt(lambda: resource.setrlimit(which, unlimited))


    def limits(event, context):
        names = ["DATA", "CPU", "NPROC", "NOFILE", "FSIZE", "CORE"]
        return {name: resource.getrlimit(getattr(resource, "RLIMIT_" + name)) for name in names}


    def spin_past_own_limit(event, context):
        """Raise the soft CPU limit as far as it goes, then spin."""
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        while True:
            pass


    def spin_in_background(event, context):
        import threading

        def spin():
            while True:
                pass

        threading.Thread(target=spin, daemon=True).start()
        return "left spinning"


    def kill(event, context):
        return attempt(lambda: os.kill(int(event.text()), signal.SIGKILL))


    def ptrace(event, context):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(16, int(event.text()), None, None) != 0:  # PTRACE_ATTACH
            return {"ok": False, "errno": ctypes.get_errno()}
        return {"ok": True}


    def identity(event, context):
        with open("/proc/self/status") as status:
            fields = dict(line.rstrip("\\n").split(":\\t", 1) for line in status if ":\\t" in line)
        libc = ctypes.CDLL(None, use_errno=True)
        return {
            "ids": [os.getresuid(), os.getresgid()],
            "groups": os.getgroups(),
            "caps": [int(fields[k], 16) for k in ("CapEff", "CapPrm", "CapInh", "CapAmb")],
            "no_new_privs": int(fields["NoNewPrivs"]),
            "dumpable": libc.prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        }


    def leave_behind(event, context):
        """A child that sleeps on, and a grandchild whose parent exits at once (a daemon)."""
        import time

        child = os.fork()
        if child == 0:
            time.sleep(600)
            os._exit(0)
        r, w = os.pipe()
        middle = os.fork()
        if middle == 0:
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(600)
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.waitpid(middle, 0)
        return {"pids": [child, int(os.read(r, 32))]}


    def fork_bomb(event, context):
        children, failure = [], None
        for _ in range(10_000):
            try:
                pid = os.fork()
            except OSError as exc:
                failure = exc.errno
                break
            if pid == 0:
                os._exit(0)
            children.append(pid)
        return {"children": children, "errno": failure}
    '''
)


class DataDir:
    """A data folder as the platform keeps one, with one function unpacked in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir()
        self.state_db = root / "state.db"
        with sqlite3.connect(self.state_db) as db:
            db.execute("create table secrets (token text)")
            db.execute("insert into secrets values ('the operator token hash')")
        self.token = root / "operator.token"
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"nfaas_secret\n")
        os.close(fd)
        blobs = BlobStore(root / "store")
        tree = blobs.put_tree({"probe.py": PROBE.encode()})
        self.code = blobs.materialise(tree, root / "functions" / "app" / "probe" / f"1-{tree[:12]}")


def probe(data: DataDir, handler: str, limits: Limits | None = None) -> FunctionCode:
    limits = limits or Limits(memory_mb=64, timeout_s=5)
    return FunctionCode("app", "probe", "1", f"probe:{handler}", data.code, limits)


async def loaded(backend: ProcessBackend, code: FunctionCode) -> ProcessSandbox:
    sandbox = backend.create()
    assert isinstance(sandbox, ProcessSandbox)
    await sandbox.prepare()
    await sandbox.load(code)
    return sandbox


async def call(sandbox: ProcessSandbox, body: str | bytes = b"") -> Any:
    data = body.encode() if isinstance(body, str) else body
    return orjson.loads((await sandbox.invoke(Event("invoke", data))).body)


def refused(answer: dict[str, Any], kind: str = "PermissionError") -> bool:
    return answer["ok"] is False and answer["type"] == kind


@pytest.fixture
def data(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "data")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A root-owned folder anyone may enter: only the files' own modes protect them."""
    folder = Path(tempfile.mkdtemp(prefix="nfaas-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


@pytest.fixture
async def backend() -> AsyncIterator[ProcessBackend]:
    async with ProcessBackend() as started:
        yield started


class TestIdentity:
    async def test_worker_is_an_unprivileged_uid_of_its_own(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        first = await loaded(backend, probe(data, "identity"))
        second = await loaded(backend, probe(data, "identity"))
        async with first, second:
            one, two = await call(first), await call(second)
        uid = one["ids"][0][0]
        assert uid != 0 and uid in Confinement().uids
        assert one["ids"] == [[uid] * 3, [uid] * 3]  # real, effective, saved; gid = uid
        assert two["ids"][0][0] != uid
        assert one["groups"] == []
        assert one["caps"] == [0, 0, 0, 0]
        assert one["no_new_privs"] == 1
        assert one["dumpable"] == 0

    async def test_rlimits_are_hard_and_cannot_be_raised(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        async with await loaded(backend, probe(data, "limits")) as sandbox:
            limits = await call(sandbox)
        for name, (soft, hard) in limits.items():
            assert soft == hard != resource.RLIM_INFINITY, name
        assert limits["CORE"] == [0, 0]
        assert limits["NOFILE"][0] == Confinement().open_files
        for name in ("RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE"):
            async with await loaded(backend, probe(data, "raise_limit")) as sandbox:
                assert refused(await call(sandbox, name), "ValueError"), name

    async def test_a_new_zygote_gives_no_uid_a_surviving_worker_holds(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        async with await loaded(backend, probe(data, "identity")) as survivor:
            held = (await call(survivor))["ids"][0][0]
            old = backend.zygote_pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            assert await until(lambda: not alive(old))
            fresh = [await loaded(backend, probe(data, "identity")) for _ in range(3)]
            try:
                uids = {(await call(sandbox))["ids"][0][0] for sandbox in fresh}
            finally:
                for sandbox in fresh:
                    await sandbox.aclose()
            assert backend.zygote_pid != old
            assert held not in uids and len(uids) == 3
            assert (await call(survivor))["ids"][0][0] == held

    async def test_uids_that_belong_to_someone_are_refused(self) -> None:
        nobody = pwd.getpwnam("nobody").pw_uid
        config = ProcessConfig(confinement=Confinement(uids=range(nobody, nobody + 1)))
        with pytest.raises(BackendUnavailable, match="user nobody"):
            async with ProcessBackend(config):
                pass


class TestFiles:
    async def test_cannot_read_a_root_only_file(
        self, backend: ProcessBackend, data: DataDir, open_folder: Path
    ) -> None:
        token = open_folder / "operator.token"
        fd = os.open(token, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"nfaas_secret\n")
        os.close(fd)
        async with await loaded(backend, probe(data, "read")) as sandbox:
            assert refused(await call(sandbox, str(token)))
            assert refused(await call(sandbox, str(data.token)))
            assert (await call(sandbox, "/etc/passwd"))["ok"]  # world-readable stays so

    async def test_cannot_open_the_state_database(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        async with await loaded(backend, probe(data, "query")) as sandbox:
            assert refused(await call(sandbox, str(data.state_db)), "OperationalError")

    async def test_cannot_climb_out_of_the_code_folder(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        """The code folder's fd is the worker's; '..' from it leads to nothing it may enter."""
        async with await loaded(backend, probe(data, "read_from_code")) as sandbox:
            assert (await call(sandbox, "probe.py"))["ok"]
            assert refused(await call(sandbox, "../../../../state.db"))
            assert refused(await call(sandbox, "../../../../operator.token"))
            assert refused(await call(sandbox, "../../../../store/blobs"))

    async def test_cannot_write_outside_its_scratch_folder(
        self, backend: ProcessBackend, data: DataDir, open_folder: Path
    ) -> None:
        async with await loaded(backend, probe(data, "write")) as sandbox:
            for target in ("/etc/nfaas-probe", str(open_folder / "x"), str(data.root / "x")):
                assert refused(await call(sandbox, target)), target
        async with await loaded(backend, probe(data, "write_in_code")) as sandbox:
            assert refused(await call(sandbox))
        assert not Path("/etc/nfaas-probe").exists()
        assert not (data.code / "dropped.py").exists()
        assert {p.name for p in data.code.iterdir()} == {"probe.py"}

    async def test_scratch_folder_is_private_and_removed_at_close(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        sandbox = await loaded(backend, probe(data, "scratch"))
        async with sandbox:
            seen = await call(sandbox)
            folder = sandbox.scratch
            assert folder is not None
            assert seen["tmpdir"] == seen["home"] == seen["cwd"] == str(folder)
            assert seen["read_back"] == "mine"
            assert seen["mode"] == 0o700
            assert seen["owner"] != 0 and seen["owner"] in Confinement().uids
        assert await until(lambda: not folder.exists())

    async def test_file_size_is_bounded(self, data: DataDir) -> None:
        config = ProcessConfig(confinement=Confinement(file_mb=1))
        async with ProcessBackend(config) as backend:
            async with await loaded(backend, probe(data, "big_file")) as sandbox:
                assert (await call(sandbox, str(512 * 1024)))["ok"]
                answer = await call(sandbox, str(2 * 1024 * 1024))
        assert answer["ok"] is False and answer["errno"] == errno.EFBIG

    async def test_code_folder_the_worker_cannot_read_is_a_clear_load_error(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        data.code.chmod(0o700)
        sandbox = backend.create()
        await sandbox.prepare()
        with pytest.raises(SandboxStartError, match=r"code folder is mode 700.*0755"):
            await sandbox.load(probe(data, "identity"))
        await sandbox.aclose()


class TestProcesses:
    async def test_cannot_signal_the_platform_the_zygote_or_another_worker(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        other = await loaded(backend, probe(data, "identity"))
        async with other, await loaded(backend, probe(data, "kill")) as killer:
            assert other.pid is not None and backend.zygote_pid is not None
            for pid in (os.getpid(), backend.zygote_pid, other.pid):
                assert refused(await call(killer, str(pid))), pid
            assert alive(other.pid) and alive(backend.zygote_pid)
            assert (await call(other))["ids"]

    async def test_cannot_trace_another_worker(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        other = await loaded(backend, probe(data, "identity"))
        async with other, await loaded(backend, probe(data, "ptrace")) as tracer:
            assert other.pid is not None
            assert await call(tracer, str(other.pid)) == {"ok": False, "errno": errno.EPERM}
            assert (await call(other))["ids"]

    async def test_fork_bomb_is_bounded_and_leaves_nothing(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        async with await loaded(backend, probe(data, "fork_bomb")) as bomb:
            answer = await call(bomb)
            assert answer["errno"] == errno.EAGAIN
            assert 0 < len(answer["children"]) <= Confinement().tasks
            again = await call(bomb)  # its children are zombies it never reaped
            assert again["children"] == [] and again["errno"] == errno.EAGAIN
        async with await loaded(backend, probe(data, "identity")) as fresh:
            assert (await call(fresh))["ids"]

        def zombie(pid: int) -> bool:
            try:
                return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
            except (FileNotFoundError, ProcessLookupError):  # gone, or being reaped as we read
                return False

        # The zygote (a subreaper) inherited and reaped what the dead worker left.
        assert await until(lambda: not any(zombie(pid) for pid in answer["children"]))

    async def test_nothing_a_function_started_outlives_its_worker(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        async with await loaded(backend, probe(data, "leave_behind")) as sandbox:
            pids = (await call(sandbox))["pids"]
            assert all(alive(pid) for pid in pids)
            # The worker is a subreaper: the daemon's parent is the worker, not init.
            parent = Path(f"/proc/{pids[1]}/stat").read_text().rpartition(")")[2].split()[1]
            assert int(parent) == sandbox.pid
        assert await until(lambda: not any(alive(pid) for pid in pids))

    async def test_raising_its_own_cpu_limit_does_not_buy_more_cpu(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        limits = Limits(memory_mb=64, cpu=0.1, timeout_s=30.0)  # a 3 s budget, a 30 s timeout
        async with await loaded(backend, probe(data, "spin_past_own_limit", limits)) as sandbox:
            started = asyncio.get_running_loop().time()
            with pytest.raises(FunctionTimeout, match="CPU time limit"):
                await sandbox.invoke(Event("invoke"))
            assert asyncio.get_running_loop().time() - started < limits.timeout_s

    async def test_cpu_spent_after_the_invocation_still_counts(
        self, backend: ProcessBackend, data: DataDir
    ) -> None:
        limits = Limits(memory_mb=64, cpu=0.1, timeout_s=5.0)  # a 1 s budget
        async with await loaded(backend, probe(data, "spin_in_background", limits)) as sandbox:
            assert (await sandbox.invoke(Event("invoke"))).body == b"left spinning"
            assert await until(lambda: sandbox.state is SandboxState.FAILED, within=10.0)
            with pytest.raises(FunctionCrashed, match="CPU time limit"):
                await sandbox.invoke(Event("invoke"))
