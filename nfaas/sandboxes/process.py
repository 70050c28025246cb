"""The process backend: Python functions in processes forked from a warm zygote.

``prepare`` asks the zygote (``nfaas.sandboxes.zygote``) for a child: a fork of
a runtime that has already imported the worker, in new IPC and UTS namespaces
when running as root. ``load`` sends the function's code and limits over the
worker protocol (``nfaas.sandboxes.protocol``), and the worker
(``nfaas.sandboxes.worker``) applies them and imports the handler. ``invoke``
enforces the wall-clock timeout here: past ``timeout_s`` the child is killed.

Exits are reported by the zygote, which reaps the children, so a crash says
how the process ended. The platform holds a pidfd per child and kills through
it, never by pid, so a reused pid is never hit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nfaas.errors import (
    BackendUnavailable,
    EventTooLarge,
    FunctionCrashed,
    FunctionFailure,
    FunctionOutOfMemory,
    FunctionRaised,
    FunctionTimeout,
    SandboxError,
    SandboxStartError,
)
from nfaas.sandboxes.base import (
    Event,
    FunctionCode,
    Result,
    Sandbox,
    SandboxBackend,
    SandboxState,
    SandboxStats,
)
from nfaas.sandboxes.protocol import (
    DEFAULT_MAX_FRAME,
    Message,
    check_reply,
    invoke_message,
    load_message,
    read_message,
)
from nfaas.sandboxes.protocol import pack as pack_frame
from nfaas.sandboxes.worker import EXIT_OUT_OF_MEMORY
from nfaas.sandboxes.zygote import pack, recv_packet

logger = logging.getLogger(__name__)

#: what every function's environment starts from; the descriptor's variables go on top
DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
#: how long a crashed child's exit status may take to arrive from the zygote
EXIT_STATUS_WAIT_S = 0.1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """How the process backend runs its zygote and workers."""

    #: the interpreter of the Python runtime (the platform's own by default)
    python: str = sys.executable
    #: the environment every function starts from (the platform's is never passed on)
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    max_frame: int = DEFAULT_MAX_FRAME
    #: new IPC and UTS namespaces per child, when running as root
    namespaces: bool = True
    #: children the zygote keeps forked ahead, so that a prepare rarely waits for a fork
    spares: int = 1
    zygote_start_timeout_s: float = 10.0
    prepare_timeout_s: float = 5.0
    load_timeout_s: float = 10.0


@dataclass(slots=True)
class WorkerHandle:
    """One forked child as the platform holds it."""

    pid: int
    sock: socket.socket
    pidfd: int
    #: the child's exit status (negative: killed by that signal), None if unknowable
    exited: asyncio.Future[int | None]

    def kill(self) -> None:
        if self.pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def release(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


def describe_exit(status: int | None) -> str:
    """How a child ended, in words: "exited with status 3", "was killed by signal 9 (SIGKILL)"."""
    if status is None:
        return "ended, with an exit status nobody could collect (its zygote had gone)"
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = "unknown signal"
    return f"was killed by signal {-status} ({name})"


@dataclass(slots=True)
class _Call:
    """One invocation in flight: settled by its answer, its deadline or the worker's end."""

    future: asyncio.Future[Message]
    timer: asyncio.TimerHandle


class ProcessSandbox(Sandbox):
    backend: ClassVar[str] = "process"

    def __init__(self, owner: ProcessBackend) -> None:
        super().__init__()
        self._owner = owner
        self._max_frame = owner.config.max_frame
        self.instance_id = secrets.token_hex(6)
        self.worker: WorkerHandle | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._code: FunctionCode | None = None
        self._calls: dict[int, _Call] = {}
        self._next_id = 0
        self._slots = asyncio.Semaphore(1)
        self._reader_task: asyncio.Task[None] | None = None
        #: why the sandbox failed, when the platform knows better than the exit status
        self._failure: str | None = None

    @property
    def pid(self) -> int | None:
        return self.worker.pid if self.worker is not None else None

    async def prepare(self) -> None:
        if self.state is not SandboxState.NEW:
            raise SandboxStartError(f"cannot prepare a sandbox in state {self.state.value}")
        try:
            async with asyncio.timeout(self._owner.config.prepare_timeout_s):
                self.worker = await self._owner.fork()
                self.worker.exited.add_done_callback(self._on_exit)
                self._reader, self._writer = await asyncio.open_unix_connection(
                    sock=self.worker.sock
                )
                hello = await read_message(self._reader, self._max_frame)
            if hello is None:
                raise SandboxStartError(f"the new worker {await self._exit_description()}")
            if check_reply(hello)["op"] != "ready":
                raise SandboxError(f"protocol violation: {hello['op']!r} instead of 'ready'")
        except BaseException as exc:
            self._break(f"prepare failed: {exc!r}")
            if isinstance(exc, TimeoutError):
                raise SandboxStartError("no worker was ready in time") from exc
            if isinstance(exc, SandboxError | OSError) and not isinstance(exc, SandboxStartError):
                raise SandboxStartError(f"cannot prepare a worker: {exc}") from exc
            raise
        if self.state is SandboxState.NEW:
            self.state = SandboxState.PREPARED

    async def load(self, code: FunctionCode) -> None:
        if self.state is not SandboxState.PREPARED:
            raise SandboxStartError(f"cannot load into a sandbox in state {self.state.value}")
        assert self._reader is not None and self._writer is not None
        env = {**self._owner.config.env, **code.environment}
        try:
            self._writer.write(
                pack_frame(load_message(0, code, self.instance_id, env), self._max_frame)
            )
            async with asyncio.timeout(self._owner.config.load_timeout_s):
                await self._writer.drain()
                reply = await read_message(self._reader, self._max_frame)
            if reply is None:
                raise SandboxStartError(
                    f"the worker {await self._exit_description()} while loading"
                )
            if check_reply(reply)["op"] == "load_error":
                raise SandboxStartError(
                    f"{reply['type']}: {reply['message']}",
                    exc_type=reply["type"],
                    traceback=reply["traceback"],
                )
            if reply["op"] != "loaded":
                raise SandboxError(f"protocol violation: {reply['op']!r} instead of 'loaded'")
        except BaseException as exc:
            self._break(f"load failed: {exc!r}")
            if isinstance(exc, TimeoutError):
                limit = self._owner.config.load_timeout_s
                raise SandboxStartError(f"{code.ref}: not loaded within {limit:g} s") from exc
            if isinstance(exc, SandboxError | OSError):
                detail = exc.detail if isinstance(exc, SandboxError) else str(exc)
                raise SandboxStartError(
                    f"{code.ref}: cannot load {code.handler}: {detail}", **getattr(exc, "extra", {})
                ) from exc
            raise
        if self.state is not SandboxState.PREPARED:  # the worker died just after answering
            raise SandboxStartError(f"{code.ref}: the worker {await self._exit_description()}")
        self._code = code
        self._slots = asyncio.Semaphore(max(1, code.limits.concurrency))
        self._reader_task = asyncio.create_task(self._read_answers(), name=f"worker-{self.pid}")
        self.state = SandboxState.LOADED

    async def invoke(self, event: Event) -> Result:
        if self.state is not SandboxState.LOADED:
            if self.state is SandboxState.FAILED:
                raise FunctionCrashed(f"the sandbox has failed: {self._failure}")
            raise SandboxError(f"cannot invoke a sandbox in state {self.state.value}")
        assert self._code is not None and self._writer is not None
        if len(event.body) > self._max_frame:
            raise EventTooLarge(
                f"an event of {len(event.body)} bytes is over the "
                f"{self._max_frame}-byte frame limit",
                size=len(event.body),
            )
        timeout = self._code.limits.timeout_s
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            self._next_id += 1
            request_id = self._next_id
            frame = pack_frame(
                invoke_message(request_id, event, time.monotonic() + timeout), self._max_frame
            )
        except BaseException:
            self._slots.release()
            raise
        call = _Call(loop.create_future(), loop.call_later(timeout, self._on_deadline, request_id))
        self._calls[request_id] = call
        self._writer.write(frame)
        try:
            await self._writer.drain()
        except ConnectionError:
            pass  # the worker is gone: _read_answers reports how
        answer = await call.future  # a cancelled caller leaves the deadline armed
        return Result(answer["body"], answer["content_type"], answer["first_line_at"])

    def _on_deadline(self, request_id: int) -> None:
        assert self._code is not None
        timeout = self._code.limits.timeout_s
        self._break(f"killed when invocation {request_id} ran past its {timeout:g} s timeout")
        self._settle(
            request_id,
            FunctionTimeout(
                f"{self._code.ref}: no answer within {timeout:g} s; the sandbox was killed"
            ),
        )

    async def _read_answers(self) -> None:
        assert self._reader is not None and self._code is not None
        try:
            while (message := await read_message(self._reader, self._max_frame)) is not None:
                op = check_reply(message)["op"]
                if op not in ("result", "error") or message["id"] not in self._calls:
                    raise SandboxError(f"protocol violation: unexpected {op!r} message")
                self._settle(message["id"], self._outcome(message))
        except SandboxError as exc:
            self._break(f"killed for breaking the worker protocol ({exc.detail})")
        except ConnectionError:
            pass
        status = await self._exit_status()
        self._break(self._failure or f"the worker {describe_exit(status)}")
        for request_id in list(self._calls):
            self._settle(request_id, self._death(status))

    def _outcome(self, message: Message) -> Message | FunctionFailure:
        assert self._code is not None
        if message["op"] == "result":
            return message
        if message["kind"] == "oom":
            self._break(f"over its {self._code.limits.memory_mb} MB memory limit")
            return FunctionOutOfMemory(
                f"{self._code.ref}: over its {self._code.limits.memory_mb} MB memory limit"
            )
        return FunctionRaised(
            f"{message['type']}: {message['message']}",
            exc_type=message["type"],
            traceback=message["traceback"],
        )

    def _death(self, status: int | None) -> FunctionFailure:
        """What the worker's end means for the invocations it left unanswered."""
        assert self._code is not None
        ref, limits = self._code.ref, self._code.limits
        if status == EXIT_OUT_OF_MEMORY:
            return FunctionOutOfMemory(f"{ref}: over its {limits.memory_mb} MB memory limit")
        if status == -signal.SIGXCPU:
            budget = max(1.0, limits.cpu * limits.timeout_s)
            return FunctionTimeout(
                f"{ref}: over its CPU time limit ({budget:g} s per invocation); the worker "
                f"{describe_exit(status)}"
            )
        if self._failure is not None and self._failure.startswith("killed"):
            return FunctionCrashed(f"{ref}: the worker was {self._failure}")
        return FunctionCrashed(f"{ref}: the worker {describe_exit(status)}")

    def _settle(self, request_id: int, outcome: Message | BaseException) -> None:
        call = self._calls.pop(request_id, None)
        if call is None:
            return
        call.timer.cancel()
        self._slots.release()
        if call.future.done():
            return
        if isinstance(outcome, BaseException):
            call.future.set_exception(outcome)
        else:
            call.future.set_result(outcome)

    def _on_exit(self, exited: asyncio.Future[int | None]) -> None:
        """The zygote reported the child's end, perhaps while it sat idle in a pool."""
        if self.state in (SandboxState.NEW, SandboxState.PREPARED, SandboxState.LOADED):
            self.state = SandboxState.FAILED
            if self._failure is None and not exited.cancelled():
                self._failure = f"the worker {describe_exit(exited.result())}"

    def _break(self, reason: str) -> None:
        """Kill the worker and mark the sandbox FAILED (CLOSED stays CLOSED)."""
        if self._failure is None:
            self._failure = reason
        if self.state is not SandboxState.CLOSED:
            self.state = SandboxState.FAILED
        if self.worker is not None:
            self.worker.kill()

    async def _exit_status(self) -> int | None:
        if self.worker is None:
            return None
        try:
            async with asyncio.timeout(EXIT_STATUS_WAIT_S):
                return await asyncio.shield(self.worker.exited)
        except TimeoutError:
            return None

    async def _exit_description(self) -> str:
        return describe_exit(await self._exit_status())

    async def stats(self) -> SandboxStats:
        worker = self.worker
        if worker is None or worker.exited.done() or self.state is SandboxState.CLOSED:
            return SandboxStats()
        return _proc_stats(worker.pid)

    async def aclose(self) -> None:
        if self.state is SandboxState.CLOSED:
            return
        self.state = SandboxState.CLOSED
        self._owner.forget(self)
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.kill()
            worker.exited.remove_done_callback(self._on_exit)
            worker.release()
            if self._writer is None:
                worker.sock.close()
        if self._writer is not None:
            self._writer.close()
        for request_id in list(self._calls):
            self._settle(request_id, SandboxError("the sandbox was closed"))
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _proc_stats(pid: int) -> SandboxStats:
    """Memory and CPU time of ``pid`` from procfs (in memory: these reads never block)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            rss_kb = next(int(line.split()[1]) for line in status if line.startswith(b"VmRSS:"))
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime: proc(5) fields 14 and 15
    except (OSError, StopIteration, ValueError, IndexError):
        return SandboxStats()
    return SandboxStats(rss_bytes=rss_kb * 1024, cpu_seconds=ticks / _CLOCK_TICKS)


class Zygote:
    """The platform's handle on one zygote process and its control channel."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.process = process
        self._control = control
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[int] = self._loop.create_future()
        self._forks: dict[int, asyncio.Future[WorkerHandle]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._next_req = 0
        self.alive = True
        self._loop.add_reader(control.fileno(), self._on_readable)

    @classmethod
    async def start(cls, config: ProcessConfig) -> Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        args = ["--control-fd", str(theirs.fileno()), "--max-frame", str(config.max_frame)]
        args += ["--spares", str(config.spares)]
        if not config.namespaces:
            args.append("--no-namespaces")
        try:
            process = await asyncio.create_subprocess_exec(
                # -P: the platform's working folder is not on the functions' path;
                # -B: code folders are content-addressed, never written to.
                *(config.python, "-u", "-B", "-P", "-s", "-m", "nfaas.sandboxes.zygote", *args),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=sys.__stderr__.fileno() if sys.__stderr__ else subprocess.DEVNULL,
                env=config.env,
                start_new_session=True,  # a ^C meant for the platform does not reach sandboxes
            )
        except OSError as exc:
            ours.close()
            raise BackendUnavailable(f"cannot start the zygote ({config.python}): {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = cls(process, ours)
        try:
            async with asyncio.timeout(config.zygote_start_timeout_s):
                await zygote._ready
        except BaseException as exc:
            await zygote.aclose()
            raise BackendUnavailable(f"the zygote did not start: {exc!r}") from exc
        logger.debug("zygote started, pid %d", process.pid)
        return zygote

    async def fork(self) -> WorkerHandle:
        if not self.alive:
            raise SandboxStartError("the zygote has exited")
        self._next_req += 1
        req = self._next_req
        future: asyncio.Future[WorkerHandle] = self._loop.create_future()
        self._forks[req] = future
        try:
            await self._loop.sock_sendall(self._control, pack({"op": "fork", "req": req}))
            return await future
        finally:
            self._forks.pop(req, None)

    def _on_readable(self) -> None:
        while self.alive:
            try:
                message, fds = recv_packet(self._control)
            except BlockingIOError:
                return
            if message is None:
                self._lost()
                return
            self._dispatch(message, fds)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "forked" and len(fds) == 2:
            pid = message["pid"]
            exited: asyncio.Future[int | None] = self._loop.create_future()
            self._exits[pid] = exited
            handle = WorkerHandle(pid, socket.socket(fileno=fds[0]), fds[1], exited)
            future = self._forks.get(message["req"])
            if future is None or future.done():  # the prepare that asked was cancelled
                handle.kill()
                handle.release()
                handle.sock.close()
            else:
                future.set_result(handle)
            return
        for fd in fds:
            os.close(fd)
        if op == "exited":
            done = self._exits.pop(message["pid"], None)
            if done is not None and not done.done():
                done.set_result(message["status"])
        elif op == "fork_failed":
            future = self._forks.get(message["req"])
            if future is not None and not future.done():
                future.set_exception(SandboxStartError(f"fork failed: {message['message']}"))
        elif op == "ready" and not self._ready.done():
            self._ready.set_result(message["pid"])

    def _lost(self) -> None:
        """The channel closed: the zygote exited, or is being stopped."""
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self._control.fileno())
        self._control.close()
        gone = SandboxStartError("the zygote exited")
        if not self._ready.done():
            self._ready.set_exception(gone)
        for pending in self._forks.values():
            if not pending.done():
                pending.set_exception(gone)
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(None)
        self._exits.clear()
        if self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # mark retrieved: nobody may be waiting any more

    async def aclose(self) -> None:
        """Close the channel, which tells the zygote to kill its children and exit."""
        self._lost()
        try:
            async with asyncio.timeout(5.0):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class ProcessBackend(SandboxBackend):
    name: ClassVar[str] = "process"

    def __init__(self, config: ProcessConfig | None = None) -> None:
        self.config = config or ProcessConfig()
        self._zygote: Zygote | None = None
        self._zygote_lock = asyncio.Lock()
        self._sandboxes: set[Sandbox] = set()
        self._closed = False

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if not sys.platform.startswith("linux"):
            return False, "needs Linux (fork, pidfds, SCM_RIGHTS)"
        try:
            os.close(os.pidfd_open(os.getpid()))
        except (AttributeError, OSError) as exc:
            return False, f"no pidfd support (Linux 5.3 or later): {exc}"
        return True, "available"

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.process.pid if self._zygote is not None else None

    async def start(self) -> None:
        async with self._zygote_lock:
            if self._zygote is None:
                self._zygote = await Zygote.start(self.config)

    def create(self) -> Sandbox:
        sandbox = ProcessSandbox(self)
        self._sandboxes.add(sandbox)
        return sandbox

    async def fork(self) -> WorkerHandle:
        """A fresh child of the zygote, restarting the zygote first if it has died."""
        if self._closed:
            raise SandboxStartError("the process backend is closed")
        async with self._zygote_lock:
            zygote = self._zygote
            if zygote is None or not zygote.alive:
                if zygote is not None:
                    await zygote.aclose()
                    logger.warning(
                        "the zygote (pid %d) %s; starting a new one",
                        zygote.process.pid,
                        describe_exit(zygote.process.returncode),
                    )
                zygote = self._zygote = await Zygote.start(self.config)
        return await zygote.fork()

    def forget(self, sandbox: Sandbox) -> None:
        self._sandboxes.discard(sandbox)

    async def aclose(self) -> None:
        self._closed = True
        for sandbox in list(self._sandboxes):
            await sandbox.aclose()
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await zygote.aclose()
