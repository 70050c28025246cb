"""The tc hook: a program on an interface's clsact qdisc, ingress or egress.

Where XDP sees only what arrives, tc sees both directions, after the stack
built the socket buffer (EVE025 5.7: eBPF hooks at several points of the data
path). libbpf attaches through netlink: a ``clsact`` qdisc on the interface
(made if missing), then a direct-action ``cls_bpf`` filter. nfaas places its
filter at a fixed handle and priority, so a second VNF on the same hook is a
conflict rather than a silent chain, and detaching removes only a filter
that still runs our program. The clsact qdisc goes too when nfaas made it
(or found it holding nfaas's filter of the other direction) and no filter is
left on it, so termination leaves the interface as it was.
"""

from __future__ import annotations

import ctypes
import errno
import json
import subprocess
from dataclasses import dataclass
from typing import Literal

from nfaas.ebpf import libbpf as lb
from nfaas.errors import BindingConflict, SandboxStartError

Direction = Literal["ingress", "egress"]

#: nfaas's filter on every clsact hook it uses
FILTER_HANDLE = 1
FILTER_PRIORITY = 1
_POINTS = {"ingress": lb.BPF_TC_INGRESS, "egress": lb.BPF_TC_EGRESS}


def _hook_struct(ifindex: int, point: int) -> lb.TcHookStruct:
    return lb.TcHookStruct(sz=ctypes.sizeof(lb.TcHookStruct), ifindex=ifindex, attach_point=point)


def _opts(prog_fd: int = 0) -> lb.TcOptsStruct:
    return lb.TcOptsStruct(
        sz=ctypes.sizeof(lb.TcOptsStruct),
        prog_fd=prog_fd,
        handle=FILTER_HANDLE,
        priority=FILTER_PRIORITY,
    )


@dataclass(frozen=True, slots=True)
class TcHook:
    """Where a tc program runs: an interface's clsact ingress or egress, in a namespace."""

    interface: str
    direction: Direction = "ingress"
    netns: str | None = None

    @property
    def kind(self) -> str:
        return "tc"

    @property
    def slot(self) -> tuple[str | None, str, str]:
        return (self.netns, self.interface, f"tc-{self.direction}")

    def __str__(self) -> str:
        where = f" in netns {self.netns}" if self.netns else ""
        return f"tc/{self.direction} on {self.interface}{where}"

    def attach(self, lib: lb.Libbpf, ifindex: int, prog_fd: int, owner: str) -> TcAttachment:
        hook = _hook_struct(ifindex, _POINTS[self.direction])
        ret = lib.bpf_tc_hook_create(ctypes.byref(hook))
        if ret < 0 and ret != -errno.EEXIST:
            raise SandboxStartError(
                f"{owner}: cannot add a clsact qdisc for {self}: {lib.strerror(-ret)}", errno=-ret
            )
        created = ret == 0
        if not created:
            # the qdisc holds nfaas's filter of the other direction: whichever of the two
            # instances leaves last removes it
            other: Direction = "egress" if self.direction == "ingress" else "ingress"
            created = attached_id(lib, ifindex, other) != 0
        opts = _opts(prog_fd)
        ret = lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
        if ret < 0:
            if created:
                _destroy_if_empty(lib, ifindex, self.interface)
            if ret == -errno.EEXIST:
                raise BindingConflict(
                    f"{owner}: {self} already has a filter at handle {FILTER_HANDLE} "
                    f"priority {FILTER_PRIORITY}",
                    hook=str(self),
                )
            raise SandboxStartError(
                f"{owner}: cannot attach to {self}: {lib.strerror(-ret)}", errno=-ret
            )
        return TcAttachment(self, ifindex, int(opts.prog_id), created)


@dataclass(frozen=True, slots=True)
class TcAttachment:
    hook: TcHook
    ifindex: int
    prog_id: int
    #: whether attaching made the clsact qdisc (then detaching removes it when empty)
    created_qdisc: bool

    def detach(self, lib: lb.Libbpf, prog_fd: int, owner: str) -> None:
        detach_filter(lib, self.ifindex, self.hook.direction, self.prog_id, owner)
        if self.created_qdisc:
            _destroy_if_empty(lib, self.ifindex, self.hook.interface)

    def record(self) -> dict[str, object]:
        return {
            "kind": "tc",
            "direction": self.hook.direction,
            "ifindex": self.ifindex,
            "created_qdisc": self.created_qdisc,
        }


def attached_id(lib: lb.Libbpf, ifindex: int, direction: Direction) -> int:
    """The id of the program in nfaas's filter on that hook (0 if none)."""
    hook = _hook_struct(ifindex, _POINTS[direction])
    opts = _opts()
    if lib.bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts)) < 0:
        return 0
    return int(opts.prog_id)


def detach_filter(
    lib: lb.Libbpf, ifindex: int, direction: Direction, prog_id: int, owner: str
) -> bool:
    """Remove nfaas's filter if it still runs ``prog_id``; whether it did."""
    if attached_id(lib, ifindex, direction) != prog_id:
        return False
    hook = _hook_struct(ifindex, _POINTS[direction])
    ret: int = lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(_opts()))
    if ret < 0 and -ret not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
        raise SandboxStartError(
            f"{owner}: cannot detach from tc/{direction}: {lib.strerror(-ret)}", errno=-ret
        )
    return ret == 0


def _filters_left(interface: str) -> bool:
    """Whether any filter remains on the interface's clsact hooks (asked of iproute2's tc)."""
    for point in ("ingress", "egress"):
        try:
            done = subprocess.run(
                ["tc", "-j", "filter", "show", "dev", interface, point],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if done.returncode != 0:
                return False  # the interface is gone, and its qdiscs with it
            if json.loads(done.stdout or "[]"):
                return True
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return True  # cannot tell: leave the qdisc rather than remove someone's filters
    return False


def _destroy_if_empty(lib: lb.Libbpf, ifindex: int, interface: str) -> None:
    if _filters_left(interface):
        return
    hook = _hook_struct(ifindex, lb.BPF_TC_INGRESS | lb.BPF_TC_EGRESS)
    lib.bpf_tc_hook_destroy(ctypes.byref(hook))  # ENOENT/ENODEV: already gone


def destroy_qdisc_if_empty(lib: lb.Libbpf, ifindex: int, interface: str) -> None:
    """For the ledger's clean-up after a crash: the clsact nfaas made, if nothing is on it."""
    _destroy_if_empty(lib, ifindex, interface)
