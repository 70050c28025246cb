"""The distribution's libbpf (``libbpf.so.1``) through ctypes.

Issue 4 asks for a well-kept loader rather than a hand-written ELF parser:
libbpf is the kernel community's own, Debian ships it as ``libbpf1``, and its
1.x API is stable. This module only declares the C signatures nfaas uses and
turns libbpf's return conventions (negative errno, or NULL with ``errno``)
into ``OSError``; the lifecycle lives in ``nfaas.ebpf.loader``.

libbpf reports through one process-wide print callback. ``Libbpf`` installs
it once and keeps what it prints per thread while ``capture()`` is active, so
an error can carry libbpf's own words (a missing section, a bad map) without
them going to stderr. The library handle is cached by ``libbpf()`` because
the shared object and its print hook are process-wide by nature.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: the soname Debian's libbpf1 package ships (libbpf 1.x API)
SONAME = "libbpf.so.1"

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_PRINT_BUF = 1 << 20

_vp, _cp, _int, _u32, _size = (
    ctypes.c_void_p,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_uint32,
    ctypes.c_size_t,
)

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "bpf_object__open_mem": (_vp, [_vp, _size, _vp]),
    "bpf_object__load": (_int, [_vp]),
    "bpf_object__close": (None, [_vp]),
    "bpf_object__find_program_by_name": (_vp, [_vp, _cp]),
    "bpf_object__next_program": (_vp, [_vp, _vp]),
    "bpf_object__find_map_by_name": (_vp, [_vp, _cp]),
    "bpf_object__next_map": (_vp, [_vp, _vp]),
    "bpf_program__name": (_cp, [_vp]),
    "bpf_program__section_name": (_cp, [_vp]),
    "bpf_program__fd": (_int, [_vp]),
    "bpf_program__type": (_int, [_vp]),
    "bpf_program__insn_cnt": (_size, [_vp]),
    "bpf_program__set_log_buf": (_int, [_vp, _vp, _size]),
    "bpf_map__name": (_cp, [_vp]),
    "bpf_map__fd": (_int, [_vp]),
    "bpf_map__type": (_int, [_vp]),
    "bpf_map__key_size": (_u32, [_vp]),
    "bpf_map__value_size": (_u32, [_vp]),
    "bpf_map__max_entries": (_u32, [_vp]),
    "bpf_map_update_elem": (_int, [_int, _vp, _vp, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (_int, [_int, _vp, _vp]),
    "bpf_map_delete_elem": (_int, [_int, _vp]),
    "bpf_map_get_next_key": (_int, [_int, _vp, _vp]),
    "bpf_obj_get_info_by_fd": (_int, [_int, _vp, ctypes.POINTER(_u32)]),
    "bpf_xdp_attach": (_int, [_int, _int, _u32, _vp]),
    "bpf_xdp_detach": (_int, [_int, _u32, _vp]),
    "bpf_xdp_query_id": (_int, [_int, _int, ctypes.POINTER(_u32)]),
    "bpf_prog_get_fd_by_id": (_int, [_u32]),
    "bpf_tc_hook_create": (_int, [_vp]),
    "bpf_tc_hook_destroy": (_int, [_vp]),
    "bpf_tc_attach": (_int, [_vp, _vp]),
    "bpf_tc_detach": (_int, [_vp, _vp]),
    "bpf_tc_query": (_int, [_vp, _vp]),
    "bpf_prog_load": (_int, [_int, _cp, _cp, _vp, _size, _vp]),
    "libbpf_num_possible_cpus": (_int, []),
    "libbpf_set_print": (_vp, [_PRINT_FN]),
    "libbpf_strerror": (_int, [_int, _cp, _size]),
}


# enum bpf_tc_attach_point
BPF_TC_INGRESS, BPF_TC_EGRESS = 1 << 0, 1 << 1


class TcHookStruct(ctypes.Structure):
    """``struct bpf_tc_hook`` (libbpf.h); ``size_t :0`` pads it to a multiple of 8."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
    )


class TcOptsStruct(ctypes.Structure):
    """``struct bpf_tc_opts`` (libbpf.h)."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    )


class ProgLoadOpts(ctypes.Structure):
    """``struct bpf_prog_load_opts`` (bpf.h, libbpf 1.x), up to ``log_buf``."""

    _fields_ = (
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_int),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_void_p),
    )


class XdpAttachOpts(ctypes.Structure):
    """``struct bpf_xdp_attach_opts`` (libbpf.h): ``sz`` then ``old_prog_fd``."""

    _fields_ = (("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int))


def check(ret: int, what: str) -> int:
    """``ret`` if it is not a negative errno, else raise ``OSError`` naming ``what``."""
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


def check_ptr(ptr: int | None, what: str) -> int:
    """A non-NULL pointer, else raise ``OSError`` from ``errno`` (libbpf 1.x convention)."""
    if not ptr:
        err = ctypes.get_errno() or 22  # EINVAL when libbpf set nothing
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ptr


class Libbpf:
    """libbpf's functions as attributes, with a per-thread capture of what it prints."""

    def __init__(self, path: str = SONAME) -> None:
        self.lib = ctypes.CDLL(path, use_errno=True)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.restype = ctypes.c_int
        # va_list is an array type on x86-64 and arm64, so it arrives as a pointer
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, _vp]
        self._local = threading.local()
        # keep a reference: libbpf holds the raw function pointer
        self._printer = _PRINT_FN(self._print)
        self.lib.libbpf_set_print(self._printer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)

    def _print(self, level: int, fmt: bytes | None, args: int | None) -> int:
        lines: list[str] | None = getattr(self._local, "lines", None)
        if lines is None or fmt is None or level == LIBBPF_DEBUG:
            return 0
        buf = ctypes.create_string_buffer(_PRINT_BUF)
        n = self._vsnprintf(buf, _PRINT_BUF, fmt, args)
        if n > 0:
            lines.append(buf.value.decode(errors="replace"))
        return 0

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Collect libbpf's warnings and notices printed by this thread meanwhile."""
        previous = getattr(self._local, "lines", None)
        lines: list[str] = []
        self._local.lines = lines
        try:
            yield lines
        finally:
            self._local.lines = previous

    def strerror(self, err: int) -> str:
        buf = ctypes.create_string_buffer(256)
        self.lib.libbpf_strerror(err, buf, len(buf))
        return buf.value.decode(errors="replace")


@functools.cache
def libbpf() -> Libbpf:
    """The process's libbpf; raises ``OSError`` if ``libbpf.so.1`` is not installed."""
    return Libbpf()
