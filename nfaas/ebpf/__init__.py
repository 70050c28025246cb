"""eBPF network functions: VNFs that run in the kernel's data path (issue 4).

EVE025 4.3.5 and 5.7 describe eBPF VNFs, 5.6 the hybrid of a kernel part and
a user-space part, 6.6.1 their onboarding and instantiation. This package
compiles restricted C to BPF objects (``compile``) and checks them against
their descriptors at onboarding (``objects``, ``onboarding``), loads,
verifies and attaches them with the distribution's libbpf (``libbpf``,
``loader``) to XDP (``xdp``) or tc (``tc``) hooks, reads and writes their
maps live (``maps``, ``layout``), and runs them as platform instances
(``instances``, ``manager``, ``ledger``, ``metrics``). An eBPF VNF is attached
to a hook, not invoked per event, so it has its own lifecycle
(``BpfProgram``) rather than the sandbox contract of ``nfaas.sandboxes``.
"""

from __future__ import annotations

from nfaas.ebpf.compile import compile_bpf
from nfaas.ebpf.loader import BpfProgram, ProgramState, TcHook, XdpHook, XdpProgram
from nfaas.ebpf.maps import BpfMap, MapInfo, UpdateFlag

__all__ = [
    "BpfMap",
    "BpfProgram",
    "MapInfo",
    "ProgramState",
    "TcHook",
    "UpdateFlag",
    "XdpHook",
    "XdpProgram",
    "compile_bpf",
]
