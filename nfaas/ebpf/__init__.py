"""eBPF network functions: VNFs that run in the kernel's data path (issue 4).

EVE025 4.3.5 and 5.7 describe eBPF VNFs, 5.6 the hybrid of a kernel part and
a user-space part, 6.6.1 their onboarding and instantiation. This package
compiles restricted C to BPF objects (``compile``), loads, verifies and
attaches them with the distribution's libbpf (``libbpf``, ``loader``), and
reads and writes their maps live (``maps``). An eBPF VNF is attached to a
hook, not invoked per event, so it has its own lifecycle (``XdpProgram``)
rather than the sandbox contract of ``nfaas.sandboxes``.
"""

from __future__ import annotations

from nfaas.ebpf.compile import compile_bpf
from nfaas.ebpf.loader import ProgramState, XdpHook, XdpProgram
from nfaas.ebpf.maps import BpfMap, MapInfo, UpdateFlag

__all__ = [
    "BpfMap",
    "MapInfo",
    "ProgramState",
    "UpdateFlag",
    "XdpHook",
    "XdpProgram",
    "compile_bpf",
]
