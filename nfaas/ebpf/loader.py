"""Load a BPF ELF object, run the verifier and attach one of its programs to a hook.

EVE025 4.3.5 and 5.7 place an eBPF VNF in the kernel's data path, behind the
verifier that checks it is safe to run there; 6.6.1 lists the steps this
module carries out for one instance (use case #6 steps 4-6): load the
object, let the verifier run, attach the program to its hook (XDP,
``nfaas.ebpf.xdp``, or tc, ``nfaas.ebpf.tc``), and on termination detach and
unload it. An eBPF VNF is attached, not invoked per event, so it has its own
lifecycle rather than the ``Sandbox`` contract:

    NEW --load--> LOADED --attach--> ATTACHED --detach--> LOADED --aclose--> CLOSED
      \\______________ any failure: everything released ______________/ -> FAILED

A verifier rejection raises ``EbpfVerifierError`` whose detail ends with the
verifier's log (``extra["verifier_log"]`` holds all of it) and leaves no
program or map in the kernel: ``bpf_object__close`` runs before the raise.
``detach`` and ``aclose`` are idempotent and remove only our own program
from the hook, never another instance's.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from nfaas.ebpf import libbpf as lb
from nfaas.ebpf.maps import BpfMap, MapInfo
from nfaas.ebpf.netns import run_in_netns
from nfaas.ebpf.tc import TcAttachment, TcHook
from nfaas.ebpf.xdp import XdpAttachment, XdpHook, XdpMode
from nfaas.errors import EbpfVerifierError, NotFound, SandboxStartError

__all__ = ["BpfProgram", "Hook", "ProgramState", "TcHook", "XdpHook", "XdpMode", "XdpProgram"]

Hook = XdpHook | TcHook
Attachment = XdpAttachment | TcAttachment

#: per-program verifier log buffer; the kernel keeps the tail, where the error is
VERIFIER_LOG_SIZE = 1 << 20
#: how much of the verifier log the error's detail shows (the tail)
DETAIL_LOG_CHARS = 6000


class ProgramState(enum.Enum):
    NEW = "new"
    LOADED = "loaded"
    ATTACHED = "attached"
    FAILED = "failed"
    CLOSED = "closed"


async def _finish_even_if_cancelled(fn: Callable[..., None], *args: Any) -> None:
    """``fn(*args)`` in a worker thread that runs to its end even if the caller is cancelled."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    # a cancelled caller never reads the outcome; read it here so it is not reported as lost
    work.add_done_callback(lambda done: done.cancelled() or done.exception())
    await asyncio.shield(work)


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _object_id(lib: lb.Libbpf, fd: int) -> int:
    # struct bpf_prog_info and bpf_map_info both start with __u32 type, __u32 id;
    # the kernel fills min(len, its own size)
    info = (ctypes.c_uint32 * 2)()
    length = ctypes.c_uint32(ctypes.sizeof(info))
    lb.check(lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(length)), "program info")
    return int(info[1])


class BpfProgram:
    """One eBPF VNF instance: an object loaded in the kernel and one program on a hook.

    ``await BpfProgram(elf, "xdp_firewall").load()`` then ``await attach(hook)``;
    ``async with`` closes it. ``maps`` are usable while LOADED or ATTACHED.
    """

    def __init__(self, elf: bytes | Path, program: str, *, name: str = "") -> None:
        self.elf = elf
        self.program = program
        self.name = name or program
        self.state = ProgramState.NEW
        self.hook: Hook | None = None
        self.maps: dict[str, BpfMap] = {}
        self.prog_id = 0
        self._lib: lb.Libbpf | None = None
        self._obj: int | None = None
        self._prog_fd = -1
        self._attachment: Attachment | None = None
        # load, attach, detach and release each run in a worker thread; a caller
        # cancelled mid-way leaves its thread to finish, and the lock makes the
        # next step wait for it, so no attachment can outlive aclose()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"BpfProgram({self.name!r}, state={self.state.value}, hook={self.hook})"

    @property
    def map_ids(self) -> list[int]:
        """Kernel ids of this object's maps (for checks with ``bpftool map show``)."""
        lib = self._lib
        return [] if lib is None else [_object_id(lib, m.fd) for m in self.maps.values()]

    # -- load ---------------------------------------------------------------

    async def load(self) -> None:
        """Open the object, run the verifier on its programs. NEW -> LOADED.

        Raises ``EbpfVerifierError`` (with the verifier's log) when the kernel
        rejects a program, ``SandboxStartError`` when the object is malformed or
        lacks ``program``; nothing stays loaded.
        """
        if self.state is not ProgramState.NEW:
            raise SandboxStartError(f"{self.name}: load() in state {self.state.value}")
        data = self.elf if isinstance(self.elf, bytes) else self.elf.read_bytes()
        await _finish_even_if_cancelled(self._load_locked, data)

    def _load_locked(self, data: bytes) -> None:
        with self._lock:
            if self.state is not ProgramState.NEW:
                raise SandboxStartError(f"{self.name}: load() in state {self.state.value}")
            try:
                self._load(data)
            except BaseException:
                self._close_object()
                self.state = ProgramState.FAILED
                raise
            self.state = ProgramState.LOADED

    def _load(self, data: bytes) -> None:
        lib = self._lib = lb.libbpf()
        buf = ctypes.create_string_buffer(data, len(data))
        log_bufs: dict[str, ctypes.Array[ctypes.c_char]] = {}
        with lib.capture() as messages:
            try:
                self._obj = lb.check_ptr(
                    lib.bpf_object__open_mem(buf, len(data), None), "open object"
                )
                prog = lib.bpf_object__next_program(self._obj, None)
                while prog:
                    log = log_bufs[lib.bpf_program__name(prog).decode()] = (
                        ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
                    )
                    lib.bpf_program__set_log_buf(prog, log, VERIFIER_LOG_SIZE)
                    prog = lib.bpf_object__next_program(self._obj, prog)
                if self.program not in log_bufs:
                    raise SandboxStartError(
                        f"{self.name}: the object has no program {self.program!r} "
                        f"(it has: {', '.join(sorted(log_bufs)) or 'none'})",
                        programs=sorted(log_bufs),
                    )
                lb.check(lib.bpf_object__load(self._obj), "load object")
            except OSError as exc:
                raise self._load_error(exc, log_bufs, messages) from exc
        prog = lib.bpf_object__find_program_by_name(self._obj, self.program.encode())
        self._prog_fd = lb.check(lib.bpf_program__fd(prog), "program fd")
        self.prog_id = _object_id(lib, self._prog_fd)
        self.maps = self._collect_maps(lib)

    def _load_error(
        self, exc: OSError, log_bufs: dict[str, ctypes.Array[ctypes.c_char]], messages: list[str]
    ) -> SandboxStartError:
        logs = {name: buf.value.decode(errors="replace") for name, buf in log_bufs.items()}
        rejected = sorted(name for name, text in logs.items() if text)
        verifier_log = "".join(logs[name] for name in rejected)
        libbpf_log = "".join(messages)
        reason = self._lib.strerror(exc.errno or 0) if self._lib is not None else exc.strerror
        cls = EbpfVerifierError if verifier_log else SandboxStartError
        if verifier_log:
            shown = (
                f"the kernel verifier rejected {', '.join(rejected)}:\n"
                f"{_tail(verifier_log, DETAIL_LOG_CHARS)}"
            )
        else:
            shown = f"cannot load eBPF object ({reason}): " + (
                _tail(libbpf_log, DETAIL_LOG_CHARS).strip() or "libbpf said nothing more"
            )
        return cls(
            f"{self.name}: {shown}",
            errno=exc.errno,
            verifier_log=verifier_log,
            libbpf_log=libbpf_log,
        )

    def _collect_maps(self, lib: lb.Libbpf) -> dict[str, BpfMap]:
        cpus = lb.check(lib.libbpf_num_possible_cpus(), "possible CPUs")
        maps: dict[str, BpfMap] = {}
        m = lib.bpf_object__next_map(self._obj, None)
        while m:
            info = MapInfo(
                name=lib.bpf_map__name(m).decode(),
                type=lib.bpf_map__type(m),
                key_size=lib.bpf_map__key_size(m),
                value_size=lib.bpf_map__value_size(m),
                max_entries=lib.bpf_map__max_entries(m),
            )
            fd = lib.bpf_map__fd(m)
            if fd >= 0:  # internal maps (.rodata, .bss) too; skipped if not created
                maps[info.name] = BpfMap(lib, fd, info, cpus)
            m = lib.bpf_object__next_map(self._obj, m)
        return maps

    # -- attach / detach ----------------------------------------------------

    async def attach(self, hook: Hook) -> None:
        """Attach the program to ``hook`` (XDP or tc). LOADED -> ATTACHED.

        Raises ``NotFound`` for an interface that does not exist,
        ``BindingConflict`` when another program holds the hook, and
        ``SandboxStartError`` otherwise (e.g. native mode on a driver without
        XDP, a program of the wrong type); the program stays loaded but unattached.
        """
        if self.state is not ProgramState.LOADED:
            raise SandboxStartError(f"{self.name}: attach() in state {self.state.value}")
        await _finish_even_if_cancelled(self._attach_locked, hook)

    def _attach_locked(self, hook: Hook) -> None:
        with self._lock:
            if self.state is not ProgramState.LOADED:
                raise SandboxStartError(f"{self.name}: attach() in state {self.state.value}")
            try:
                self._attachment = run_in_netns(hook.netns, lambda: self._attach(hook))
            except FileNotFoundError as exc:  # no such namespace
                raise NotFound(f"{self.name}: {exc}", netns=hook.netns) from None
            self.hook = hook
            self.state = ProgramState.ATTACHED

    def _attach(self, hook: Hook) -> Attachment:
        assert self._lib is not None
        try:
            ifindex = socket.if_nametoindex(hook.interface)
        except OSError:
            raise NotFound(
                f"{self.name}: no interface {hook.interface!r}"
                + (f" in netns {hook.netns}" if hook.netns else ""),
                interface=hook.interface,
            ) from None
        return hook.attach(self._lib, ifindex, self._prog_fd, self.name)

    @property
    def attachment(self) -> Attachment | None:
        """How the program is on its hook (ifindex, ...), while ATTACHED."""
        return self._attachment

    async def detach(self) -> None:
        """Take the program off its hook, if it is on one. ATTACHED -> LOADED; idempotent."""
        if self.state is ProgramState.ATTACHED:
            await _finish_even_if_cancelled(self._detach_locked)

    def _detach_locked(self) -> None:
        with self._lock:
            hook, attachment = self.hook, self._attachment
            if self.state is not ProgramState.ATTACHED or hook is None or attachment is None:
                return
            lib = self._lib
            assert lib is not None
            run_in_netns(hook.netns, lambda: attachment.detach(lib, self._prog_fd, self.name))
            self.hook = None
            self._attachment = None
            self.state = ProgramState.LOADED

    # -- close --------------------------------------------------------------

    def _close_object(self) -> None:
        if self._obj is not None and self._lib is not None:
            self._lib.bpf_object__close(self._obj)
        self._obj = None
        self._prog_fd = -1
        self.maps = {}

    def _release(self) -> None:
        with self._lock:
            # if detaching raises, the object stays open: closing it would orphan the attachment
            self._detach_locked()
            self._close_object()
            self.state = ProgramState.CLOSED

    async def aclose(self) -> None:
        """Detach and unload: no program, map or attachment left. Idempotent.

        The release runs to its end even when the caller is cancelled.
        """
        if self.state is ProgramState.CLOSED:
            return
        await _finish_even_if_cancelled(self._release)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


#: the name the XDP-only first version had; the hook decides the kind now
XdpProgram = BpfProgram
