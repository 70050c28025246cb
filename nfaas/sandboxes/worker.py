"""The worker: the sandbox side of the worker protocol, running one Python function.

The process backend's zygote forks a child and calls ``serve`` in it; a
container or a microVM can run the same loop over its own socket. In order:

1. prepared (EVE025 7.2.3 steps 1-3): say ``ready`` and wait for ``load``;
2. load (steps 4-5): set the function's environment, start its threads, cap its
   memory, import ``module:function`` from the code folder, answer ``loaded``
   or ``load_error``;
3. serve ``invoke`` frames until the platform goes away: inline when the
   function's concurrency is 1, on that many threads otherwise.

Code. The platform opens the code folder and sends it with ``load`` (an fd,
over the socket); the worker imports through ``/proc/self/fd/N``, a magic link
whose resolution does not look at the folder's parents, so a worker that runs
as an unprivileged uid reads code kept under a folder only root may enter. It
works in the ``scratch`` folder of its instance: its working folder, and by
default its TMPDIR and HOME.

Limits. Memory is RLIMIT_DATA set to what the warm runtime already maps plus
``memory_mb``, hard == soft: Linux counts every private writable mapping (brk
heap, malloc and pymalloc arenas, thread stacks) against it, so a handler that
allocates past it gets ``MemoryError`` at the allocation, which is reported as
``oom`` and ends the worker. RLIMIT_AS would also count the address space glibc
reserves per thread arena (64 MB each) and is useless with threads. When the
zygote confined the worker (``tasks`` is given), RLIMIT_NPROC is lowered at
load to the threads the worker runs plus ``tasks``. The per-invocation CPU
budget is not the worker's to keep: a process can raise its own soft
RLIMIT_CPU to the hard one and can never raise the hard one again, so the
platform enforces it from outside (``nfaas.sandboxes.cpu_budget``). These bind
any worker that is not root: one the zygote confined, or one of a platform that
does not run as root; a worker running as root could raise them again.
"""

from __future__ import annotations

import _thread
import importlib
import importlib.machinery
import os
import resource
import select
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from functools import reduce
from typing import Any, NoReturn

import orjson

from nfaas.errors import EventTooLarge, SandboxError
from nfaas.sandboxes.protocol import HEADER, Message, pack, recv_message, send_message, unpack

#: exit statuses of a worker that ends itself (an exit from the function is its own)
EXIT_PROTOCOL = 76  # sysexits EX_PROTOCOL: the platform sent something unexpected
EXIT_CONFINEMENT = 77  # sysexits EX_NOPERM: the child could not drop its privileges
EXIT_OUT_OF_MEMORY = 86  # past RLIMIT_DATA, when even the "oom" frame could not be sent

MAX_MESSAGE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 8_000
OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain; charset=utf-8"
APPLICATION_JSON = "application/json"

_RUNTIME_FILES = frozenset({__file__, importlib.__file__})

Handler = Callable[["FunctionEvent", "FunctionContext"], object]


class FunctionEvent:
    """The event as a handler sees it."""

    __slots__ = ("body", "meta", "trigger")

    def __init__(self, trigger: str, body: bytes, meta: dict[str, Any]) -> None:
        self.trigger = trigger
        self.body = body
        self.meta = meta

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def __repr__(self) -> str:
        return f"FunctionEvent(trigger={self.trigger!r}, body=<{len(self.body)} bytes>)"


class FunctionContext:
    """Who the handler is, and how long it has left."""

    __slots__ = ("_deadline", "app", "function", "instance_id", "version")

    def __init__(self, identity: Mapping[str, str], deadline: float) -> None:
        self.app = identity["app"]
        self.function = identity["name"]
        self.version = identity["version"]
        self.instance_id = identity["instance_id"]
        self._deadline = deadline

    def remaining_time(self) -> float:
        """Seconds until this invocation's deadline (negative once it has passed)."""
        return self._deadline - time.monotonic()

    def log(self, message: str) -> None:
        sys.stderr.write(
            f"[{self.app}/{self.function}@{self.version} {self.instance_id}] {message}\n"
        )


def serve(
    sock: socket.socket,
    max_frame: int,
    namespaces: list[str],
    tasks: int | None = None,
    scratch: str | None = None,
    warm_up: bool = True,
    idle: Callable[[], None] | None = None,
    on_hello: Callable[[Message], None] | None = None,
) -> NoReturn:
    """Run the worker on ``sock`` and end the process with the worker's exit status.

    ``tasks``: the processes and threads the function may start beyond the
    worker's own, when the zygote confined the worker (RLIMIT_NPROC counts its uid).
    ``scratch``: the private folder made for this worker, named in ``ready``.
    ``warm_up``: False when the runtime was warmed already (a microVM's, before its snapshot).
    ``idle``: what to do, instead of the warm-up, between ``ready`` and ``load``.
    ``on_hello``: what to do with the last ``hello`` (a restored microVM reseeds its
    random state and drops root there), before ``ready`` is said again.
    """
    status = EXIT_PROTOCOL
    try:
        status = Worker(sock, max_frame, tasks).run(namespaces, scratch, warm_up, idle, on_hello)
    except MemoryError:
        status = EXIT_OUT_OF_MEMORY
    except OSError:  # the platform went away mid-frame: nobody is left to tell
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


class Worker:
    def __init__(self, sock: socket.socket, max_frame: int, tasks: int | None = None) -> None:
        self._sock = sock
        self._max_frame = max_frame
        self._tasks = tasks
        self._send_lock = _thread.allocate_lock()
        self._handler: Handler | None = None
        self._identity: dict[str, str] = {}
        #: what the code folder is called in tracebacks (its /proc/self/fd alias) -> its path
        self._code_alias: tuple[str, str] | None = None

    def run(
        self,
        namespaces: list[str],
        scratch: str | None = None,
        warm_up: bool = True,
        idle: Callable[[], None] | None = None,
        on_hello: Callable[[Message], None] | None = None,
    ) -> int:
        ready: Message = {"op": "ready", "pid": os.getpid(), "namespaces": namespaces}
        if scratch is not None:
            ready["scratch"] = scratch
        self._send(ready)
        # After "ready": a pool keeps the sandbox a while, and a load that comes
        # at once simply waits in the socket until this is done.
        _thread.start_new_thread(_exit_on_hangup, (self._sock.fileno(),))
        if idle is not None:
            idle()
        elif warm_up:
            _warm_up(self._max_frame)
        fds: list[int] = []
        request = recv_message(self._sock, self._max_frame, fds)
        while request is not None and request["op"] == "hello":
            # A microVM restored from a snapshot of this moment: its host asks the
            # guest's clock, then hears "ready" again (the first went to the template's).
            self._send({"op": "hello", "id": request["id"], "monotonic": time.monotonic()})
            if request.get("last", True):
                if on_hello is not None:
                    on_hello(request)
                self._send(ready)
                if idle is not None:
                    idle()
            request = recv_message(self._sock, self._max_frame, fds)
        if request is None:
            return 0
        if request["op"] != "load":
            return EXIT_PROTOCOL
        for extra in fds[1:]:
            os.close(extra)
        concurrency = int(request["limits"]["concurrency"])
        reply = self._load(request, concurrency, fds[0] if fds else None)
        self._send(reply)
        if reply["op"] != "loaded":
            return 0
        if concurrency > 1:
            return self._serve_threaded(concurrency)
        while (request := recv_message(self._sock, self._max_frame)) is not None:
            self._answer(request)
        return 0

    def _send(self, message: Message) -> None:
        with self._send_lock:
            send_message(self._sock, message, self._max_frame)

    # -- load ----------------------------------------------------------------------

    def _load(self, request: Message, concurrency: int, code_fd: int | None) -> Message:
        limits = request["limits"]
        os.environ.clear()
        os.environ.update(request["env"])
        self._identity = {k: str(request[k]) for k in ("app", "name", "version", "instance_id")}
        path = request["path"]
        if code_fd is not None:
            self._code_alias = (f"/proc/self/fd/{code_fd}", path)
            path = self._code_alias[0]
        failure: BaseException | None = None
        try:
            if "files" in request:  # a worker with no view of the host's files (a microVM guest)
                _write_code(request["files"], path)
            if request.get("scratch"):
                os.chdir(request["scratch"])
            if concurrency > 1:
                self._start_threads(concurrency)
            _limit_resources(int(limits["memory_mb"]), self._tasks)
            self._handler = _import_handler(path, request["handler"])
        except MemoryError:
            failure = MemoryError(f"over the {limits['memory_mb']} MB memory limit while loading")
        except BaseException as exc:  # SyntaxError, ImportError, even SystemExit at import
            failure = exc
        if failure is not None:
            return {"op": "load_error", "id": request["id"], **self._describe(failure)}
        return {"op": "loaded", "id": request["id"]}

    def _describe(self, exc: BaseException) -> dict[str, str]:
        described = _describe(exc)
        if self._code_alias is not None:
            alias, path = self._code_alias
            described["traceback"] = described["traceback"].replace(alias, path)
        return described

    # -- invoke --------------------------------------------------------------------

    def _answer(self, request: Message) -> None:
        """Answer one invocation; ends the worker when the function ran out of memory."""
        if request["op"] != "invoke":
            os._exit(EXIT_PROTOCOL)
        out_of_memory = False
        try:
            reply = self._invoke(request)
        except MemoryError:
            out_of_memory = True
        # Outside the except block the handler's frames, and what they hold, are freed.
        if out_of_memory:
            self._report_out_of_memory(request["id"])
        try:
            self._send(reply)
        except EventTooLarge as exc:
            self._send(_error(request["id"], "raised", "ResultTooLarge", exc.detail))

    def _invoke(self, request: Message) -> Message:
        assert self._handler is not None
        request_id = request["id"]
        event = FunctionEvent(request["trigger"], request["body"], request["meta"])
        context = FunctionContext(self._identity, request["deadline"])
        try:
            first_line_at = time.monotonic()
            value = self._handler(event, context)
        except SystemExit as exc:  # the function ended its own sandbox
            _exit_like(exc)
        except MemoryError:
            raise
        except BaseException as exc:
            return {"op": "error", "id": request_id, "kind": "raised", **self._describe(exc)}
        try:
            body, content_type = _encode_result(value)
        except MemoryError:
            raise
        except Exception as exc:
            return _error(request_id, "raised", type(exc).__name__, str(exc))
        return {
            "op": "result",
            "id": request_id,
            "body": body,
            "content_type": content_type,
            "first_line_at": first_line_at,
        }

    def _report_out_of_memory(self, request_id: int) -> NoReturn:
        try:
            self._send(_error(request_id, "oom", "MemoryError", "over the memory limit"))
        finally:
            os._exit(EXIT_OUT_OF_MEMORY)

    # -- concurrency > 1 -----------------------------------------------------------

    def _start_threads(self, concurrency: int) -> None:
        # threading is imported here, not in the zygote: its at-fork hook costs
        # every fork ~0.7 ms of copy-on-write faults, and most functions run inline.
        import queue
        import threading

        self._queue: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        for n in range(concurrency):
            threading.Thread(target=self._thread_main, name=f"invoke-{n}", daemon=True).start()

    def _thread_main(self) -> None:
        while (request := self._queue.get()) is not None:
            try:
                self._answer(request)
            except BaseException:
                traceback.print_exc()
                os._exit(EXIT_PROTOCOL)

    def _serve_threaded(self, concurrency: int) -> int:
        while (request := recv_message(self._sock, self._max_frame)) is not None:
            self._queue.put(request)
        return 0


_WARM_UP_SOURCE = "def handle(event, context):\n    return {'body': event.text(), 'left': context.remaining_time()}\n"


def _warm_up(max_frame: int) -> None:
    """Run the load and invoke paths once on a throwaway function.

    A forked child pays a copy-on-write fault for each page it first writes
    (~7 us each on a VM), and CPython writes to every object it touches: the
    first load and invoke touched some 200 pages. Doing it here, while the
    sandbox is only prepared, took a third off load + first invoke (EVE025
    7.2.3: steps 1-3 take all the work that does not depend on the function).
    """
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(saved)
    importlib.machinery.PathFinder.find_spec("_nfaas_warm_up", [os.path.dirname(__file__)])
    namespace: dict[str, Any] = {}
    exec(compile(_WARM_UP_SOURCE, "<warm-up>", "exec"), namespace)
    identity = {"app": "", "name": "", "version": "", "instance_id": ""}
    event = FunctionEvent("invoke", b"{}", {})
    for value in (namespace["handle"](event, FunctionContext(identity, 0.0)), b"", "", None):
        body, content_type = _encode_result(value)
        result = {"op": "result", "id": 0, "body": body, "content_type": content_type}
        unpack(pack(result, max_frame)[HEADER.size :])


def _exit_on_hangup(fd: int) -> None:
    """End the worker as soon as the platform's end of the socket closes.

    POLLRDHUP fires on the peer's close only, never on incoming frames, so this
    thread sleeps until the platform dies or drops the sandbox, even while the
    main thread is stuck in a handler that never returns.
    """
    poller = select.poll()
    poller.register(fd, select.POLLRDHUP)
    while True:
        for _, events in poller.poll():
            if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os._exit(0)


def _limit_resources(memory_mb: int, tasks: int | None) -> None:
    """RLIMIT_DATA = what the warm runtime maps now + ``memory_mb``; RLIMIT_NPROC =
    the worker's threads now + ``tasks``. Both hard == soft, so lowered for good."""
    fields: dict[bytes, int] = {}
    with open("/proc/self/status", "rb") as status:
        for line in status:
            name, _, value = line.partition(b":")
            if name in (b"VmData", b"Threads"):
                fields[name] = int(value.split()[0])
                if len(fields) == 2:
                    break
        else:
            raise SandboxError("no VmData or Threads in /proc/self/status")
    in_use, threads = fields[b"VmData"] * 1024, fields[b"Threads"]
    _lower(resource.RLIMIT_DATA, in_use + memory_mb * 1024 * 1024)
    if tasks is not None:
        _lower(resource.RLIMIT_NPROC, threads + tasks)


def _lower(which: int, limit: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(which, (limit, limit))


def _write_code(files: Mapping[str, bytes], folder: str) -> None:
    """Write the code the load frame carries into ``folder`` (relative paths only)."""
    root = os.path.abspath(folder)
    for name, data in files.items():
        target = os.path.abspath(os.path.join(root, name))
        if not target.startswith(os.path.join(root, "")):
            raise ValueError(f"code file {name!r} is outside the code folder")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(data)


def _import_handler(path: str, spec: str) -> Handler:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"handler must be 'module:function', not {spec!r}")
    sys.path.insert(0, path)
    module = importlib.import_module(module_name)
    origin = getattr(module, "__file__", None) or ""
    if not os.path.abspath(origin).startswith(os.path.join(os.path.abspath(path), "")):
        raise ImportError(
            f"module {module_name!r} is the runtime's own ({origin or 'built in'}), "
            "not the function's: rename the function's module"
        )
    handler = reduce(getattr, attribute.split("."), module)
    if not callable(handler):
        raise TypeError(f"{spec} is a {type(handler).__name__}, not a function")
    return handler


def _encode_result(value: object) -> tuple[bytes, str]:
    if value is None:
        return b"", OCTET_STREAM
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), OCTET_STREAM
    if isinstance(value, str):
        return value.encode(), TEXT_PLAIN
    try:
        return orjson.dumps(value), APPLICATION_JSON
    except TypeError as exc:
        raise TypeError(
            f"the handler returned a {type(value).__name__}, which is not bytes, str, None "
            f"or JSON-serialisable ({exc})"
        ) from None


def _describe(exc: BaseException) -> dict[str, str]:
    """Type, message and traceback of ``exc``, truncated, from the function's first frame."""
    tb = exc.__traceback__
    while tb is not None and _is_runtime_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable exception>"
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        text = ""
    return {
        "type": type(exc).__name__,
        "message": _truncate(message, MAX_MESSAGE_CHARS),
        "traceback": _truncate(text, MAX_TRACEBACK_CHARS, keep_end=True),
    }


def _is_runtime_frame(filename: str) -> bool:
    """Frames of this worker and of the import system, which say nothing to a function's author."""
    return filename in _RUNTIME_FILES or filename.startswith("<frozen importlib")


def _error(request_id: int, kind: str, exc_type: str, message: str) -> Message:
    return {
        "op": "error",
        "id": request_id,
        "kind": kind,
        "type": exc_type,
        "message": _truncate(message, MAX_MESSAGE_CHARS),
        "traceback": "",
    }


def _truncate(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_end:  # a traceback's last lines say what went wrong
        return f"...[{cut} characters cut]...\n" + text[-limit:]
    return text[:limit] + f"...[{cut} characters cut]"


def _exit_like(exc: SystemExit) -> NoReturn:
    """What ``sys.exit`` would do to a whole program: end the worker with that status."""
    code = exc.code
    if code is None:
        os._exit(0)
    if isinstance(code, int):
        os._exit(code & 0xFF)
    sys.stderr.write(f"{code}\n")
    os._exit(1)
