"""The XDP hook: a program on an interface's receive path, before the stack.

EVE025 4.3.5 puts an eBPF VNF at the earliest point of the data path; XDP is
that point, in the driver (``native``) or just after it (``generic``, any
interface). One program per interface and mode: attaching never replaces
another program (``XDP_FLAGS_UPDATE_IF_NOEXIST``), and detaching takes off
only the program that is ours (``XDP_FLAGS_REPLACE`` with our fd), so one
instance never removes another's.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Literal

from nfaas.ebpf import libbpf as lb
from nfaas.errors import BindingConflict, SandboxStartError

XdpMode = Literal["generic", "native"]

_MODE_FLAGS: dict[str, int] = {"generic": lb.XDP_FLAGS_SKB_MODE, "native": lb.XDP_FLAGS_DRV_MODE}
#: errors that mean the program is no longer on the hook: the interface went away
#: and took it along (ENODEV), or the hook holds another program now (EEXIST)
_ALREADY_OFF = (errno.ENODEV, errno.EEXIST, errno.ENOENT)


@dataclass(frozen=True, slots=True)
class XdpHook:
    """Where an XDP program runs: an interface, in a network namespace, in a mode."""

    interface: str
    mode: XdpMode = "generic"
    #: a namespace from ``ip netns``; None is the node's own
    netns: str | None = None

    @property
    def kind(self) -> str:
        return "xdp"

    @property
    def slot(self) -> tuple[str | None, str, str]:
        """What two programs may not share: (netns, interface, hook point)."""
        return (self.netns, self.interface, "xdp")

    def __str__(self) -> str:
        where = f" in netns {self.netns}" if self.netns else ""
        return f"xdp/{self.mode} on {self.interface}{where}"

    def attach(self, lib: lb.Libbpf, ifindex: int, prog_fd: int, owner: str) -> XdpAttachment:
        # EVE025 6.6.1: one VNF per hook; never replace what another instance attached
        flags = _MODE_FLAGS[self.mode] | lb.XDP_FLAGS_UPDATE_IF_NOEXIST
        ret = lib.bpf_xdp_attach(ifindex, prog_fd, flags, None)
        if ret in (-errno.EBUSY, -errno.EEXIST):
            raise BindingConflict(f"{owner}: {self} already has an XDP program", hook=str(self))
        if ret < 0:
            raise SandboxStartError(
                f"{owner}: cannot attach to {self}: {lib.strerror(-ret)}", errno=-ret
            )
        return XdpAttachment(self, ifindex)


@dataclass(frozen=True, slots=True)
class XdpAttachment:
    hook: XdpHook
    ifindex: int

    def detach(self, lib: lb.Libbpf, prog_fd: int, owner: str) -> None:
        opts = lb.XdpAttachOpts(sz=ctypes.sizeof(lb.XdpAttachOpts), old_prog_fd=prog_fd)
        flags = _MODE_FLAGS[self.hook.mode] | lb.XDP_FLAGS_REPLACE
        ret = lib.bpf_xdp_detach(self.ifindex, flags, ctypes.byref(opts))
        if ret < 0 and -ret not in _ALREADY_OFF:
            raise SandboxStartError(
                f"{owner}: cannot detach from {self.hook}: {lib.strerror(-ret)}", errno=-ret
            )

    def record(self) -> dict[str, object]:
        """What the ledger keeps to find this attachment after a crash."""
        return {"kind": "xdp", "mode": self.hook.mode, "ifindex": self.ifindex}


def attached_id(lib: lb.Libbpf, ifindex: int, mode: XdpMode) -> int:
    """The id of the XDP program on ``ifindex`` in ``mode`` (0 if none)."""
    prog_id = ctypes.c_uint32(0)
    ret = lib.bpf_xdp_query_id(ifindex, _MODE_FLAGS[mode], ctypes.byref(prog_id))
    if ret < 0:
        return 0
    return int(prog_id.value)


def detach_stray(lib: lb.Libbpf, ifindex: int, mode: XdpMode, prog_id: int) -> bool:
    """Take program ``prog_id`` off ``ifindex`` if it is still there; whether it was."""
    if attached_id(lib, ifindex, mode) != prog_id:
        return False
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return False
    try:
        XdpAttachment(XdpHook("?", mode), ifindex).detach(lib, fd, f"program {prog_id}")
    finally:
        os.close(fd)
    return True
