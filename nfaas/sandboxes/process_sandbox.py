"""One process-backend sandbox: a worker forked by the zygote, driven over the worker protocol.

``prepare`` asks the backend for a child of the zygote (``zygote_client``) and
waits for its ``ready`` (EVE025 7.2.3 steps 1-3). ``load`` sends the function's
code and limits over the worker protocol (``nfaas.sandboxes.protocol``), and
the worker (``nfaas.sandboxes.worker``) applies them and imports the handler
(steps 4-5). A confined worker's code lives under a folder it cannot enter, so
``load`` opens the code folder here and sends the fd with the load frame; the
worker imports through ``/proc/self/fd/N``. ``invoke`` enforces the wall-clock
timeout here: past ``timeout_s`` the child is killed; and the per-invocation CPU
budget (``CpuBudget``).

Exits are reported by the zygote, which reaps the children, so a crash says
how the process ended. The sandbox kills through the worker's pidfd, never by
pid, so a reused pid is never hit. The instance's scratch folder is removed
once the worker has ended.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from nfaas.errors import (
    EventTooLarge,
    FunctionCrashed,
    FunctionFailure,
    FunctionOutOfMemory,
    FunctionRaised,
    FunctionTimeout,
    SandboxError,
    SandboxStartError,
)
from nfaas.sandboxes.base import Event, FunctionCode, Result, Sandbox, SandboxState, SandboxStats
from nfaas.sandboxes.confinement import remove_scratch
from nfaas.sandboxes.cpu_budget import CpuBudget
from nfaas.sandboxes.protocol import (
    HEADER,
    Message,
    check_reply,
    invoke_message,
    load_message,
    read_message,
)
from nfaas.sandboxes.protocol import pack as pack_frame
from nfaas.sandboxes.worker import EXIT_OUT_OF_MEMORY
from nfaas.sandboxes.zygote_client import WorkerHandle, describe_exit

if TYPE_CHECKING:
    from nfaas.sandboxes.process import ProcessBackend

#: how long a crashed child's exit status may take to arrive from the zygote
EXIT_STATUS_WAIT_S = 0.1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
        #: the namespaces the worker has of its own ("ipc", "uts"), once prepared
        self.namespaces: list[str] = []
        self.worker: WorkerHandle | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._code: FunctionCode | None = None
        self._calls: dict[int, _Call] = {}
        self._next_id = 0
        self._slots = asyncio.Semaphore(1)
        self._reader_task: asyncio.Task[None] | None = None
        self._cpu: CpuBudget | None = None
        #: the instance's private writable folder, once prepared
        self.scratch: Path | None = None
        #: why the sandbox failed, when the platform knows better than the exit status
        self._failure: str | None = None

    def _state(self) -> SandboxState:
        """The state now: other tasks and callbacks change it across an await."""
        return self.state

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
            self.namespaces = list(hello["namespaces"])
            self.scratch = self._owner.scratch_named(hello.get("scratch"))
            if (state := self._state()) is not SandboxState.NEW:  # closed, or the child died
                raise SandboxStartError(f"the sandbox became {state.value} while preparing")
        except BaseException as exc:
            self._break(f"prepare failed: {exc!r}")
            if self._state() is SandboxState.CLOSED:
                self._release()  # aclose ran before the worker's resources existed
            if isinstance(exc, TimeoutError):
                raise SandboxStartError("no worker was ready in time") from exc
            if isinstance(exc, SandboxError | OSError) and not isinstance(exc, SandboxStartError):
                raise SandboxStartError(f"cannot prepare a worker: {exc}") from exc
            raise
        self.state = SandboxState.PREPARED

    async def load(self, code: FunctionCode) -> None:
        if self.state is not SandboxState.PREPARED:
            raise SandboxStartError(f"cannot load into a sandbox in state {self.state.value}")
        assert self._reader is not None and self._writer is not None
        scratch = str(self.scratch) if self.scratch is not None else None
        defaults = {"HOME": scratch, "TMPDIR": scratch} if scratch is not None else {}
        env = {**self._owner.config.env, **defaults, **code.environment}
        try:
            self._send_load(load_message(0, code, self.instance_id, env, scratch), code)
            async with asyncio.timeout(self._owner.config.load_timeout_s):
                await self._writer.drain()
                reply = await read_message(self._reader, self._max_frame)
            if reply is None:
                raise SandboxStartError(
                    f"the worker {await self._exit_description()} while loading"
                )
            if check_reply(reply)["op"] == "load_error":
                raise SandboxStartError(
                    f"{reply['type']}: {reply['message']}{self._unreadable(code)}",
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
        if self._state() is not SandboxState.PREPARED:  # closed, or the worker died
            raise SandboxStartError(f"{code.ref}: the worker {await self._exit_description()}")
        self._code = code
        self._slots = asyncio.Semaphore(max(1, code.limits.concurrency))
        assert self.worker is not None
        budget = max(1.0, code.limits.cpu * code.limits.timeout_s)
        self._cpu = CpuBudget(self.worker.pid, budget, self._on_cpu_exceeded)
        self._reader_task = asyncio.create_task(self._read_answers(), name=f"worker-{self.pid}")
        self.state = SandboxState.LOADED

    def _unreadable(self, code: FunctionCode) -> str:
        """Why a confined worker could not read the code, if that is why it failed to load."""
        if self.worker is None or self.worker.uid is None:
            return ""
        try:
            mode = code.path.stat().st_mode
        except OSError:
            return ""
        if mode & 0o005 == 0o005:
            return ""
        return (
            f" (the code folder is mode {mode & 0o777:o}: the worker, an unprivileged "
            "user, can read it only if others may, 0755)"
        )

    def _send_load(self, message: Message, code: FunctionCode) -> None:
        """The load frame, its first bytes carrying the code folder (SCM_RIGHTS).

        Sent on the socket itself, under the transport: nothing was written since
        prepare, so the transport's buffer is empty and the order holds.
        """
        assert self.worker is not None and self._writer is not None
        frame = pack_frame(message, self._max_frame)
        folder = os.open(code.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sent = socket.send_fds(self.worker.sock, [frame], [folder])
        finally:
            os.close(folder)
        if sent < HEADER.size:
            raise SandboxError(f"sent {sent} of the load frame's {HEADER.size} header bytes")
        if sent < len(frame):  # a frame past the socket's buffer: the rest as any write
            self._writer.write(frame[sent:])

    async def invoke(self, event: Event) -> Result:
        self._check_usable()
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
            self._check_usable()  # it may have failed while this invocation queued
            self._next_id += 1
            request_id = self._next_id
            assert self.worker is not None
            offset = self.worker.clock_offset  # deadlines are read on the worker's clock
            frame = pack_frame(
                invoke_message(request_id, event, time.monotonic() + timeout - offset),
                self._max_frame,
            )
        except BaseException:
            self._slots.release()
            raise
        call = _Call(loop.create_future(), loop.call_later(timeout, self._on_deadline, request_id))
        self._calls[request_id] = call
        if self._cpu is not None:
            self._cpu.arm(len(self._calls))
        self._writer.write(frame)
        try:
            await self._writer.drain()
        except ConnectionError:
            pass  # the worker is gone: _read_answers reports how
        answer = await call.future  # a cancelled caller leaves the deadline armed
        first_line_at = answer["first_line_at"]
        if first_line_at is not None:
            first_line_at += offset
        return Result(answer["body"], answer["content_type"], first_line_at)

    def _check_usable(self) -> None:
        if self.state is SandboxState.FAILED:
            raise FunctionCrashed(f"the sandbox has failed: {self._failure}")
        if self.state is not SandboxState.LOADED:
            raise SandboxError(f"cannot invoke a sandbox in state {self.state.value}")

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

    def _on_cpu_exceeded(self, used: float) -> None:
        assert self._code is not None and self._cpu is not None
        budget = self._cpu.budget_s
        self._break(
            f"killed past its CPU time limit ({used:.2f} s used, {budget:g} s per invocation)"
        )
        for request_id in list(self._calls):
            self._settle(
                request_id,
                FunctionTimeout(
                    f"{self._code.ref}: over its CPU time limit ({budget:g} s per "
                    "invocation); the worker was killed"
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
        except OSError:
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
        if status == -signal.SIGXCPU:  # past a soft RLIMIT_CPU the function set itself
            return FunctionTimeout(
                f"{ref}: over its CPU time limit; the worker {describe_exit(status)}"
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

    def _on_exit(self, exited: asyncio.Future[int]) -> None:
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
        if self._cpu is not None:
            self._cpu.stop()
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
        self._release()
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _release(self) -> None:
        """Everything ``aclose`` does but wait for the reader task: synchronous, so a
        cancellation cannot leave half of it undone."""
        self.state = SandboxState.CLOSED
        self._owner.forget(self)
        if self._cpu is not None:
            self._cpu.stop()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # closes the worker's socket, which the transport owns
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.kill()
            worker.exited.remove_done_callback(self._on_exit)
            worker.release()
            if writer is None:
                worker.sock.close()
            scratch, self.scratch = self.scratch, None
            if scratch is not None:
                # Once the worker is gone, so it writes nothing more there. Should its
                # zygote be gone too, the backend removes every scratch folder at aclose.
                worker.exited.add_done_callback(lambda _: remove_scratch(scratch))
        for request_id in list(self._calls):
            self._settle(request_id, SandboxError("the sandbox was closed"))
        if self._reader_task is not None:
            self._reader_task.cancel()


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
