"""The ``ebpf`` runtime's entry in the sandbox registry: attached, never invoked.

The runtime repository names a backend for every runtime (EVE025 7.2.1), and
the built-in runtime ``ebpf:1`` names this one. An eBPF VNF has no sandbox
to run events in: it is instantiated on a hook through ``/api/v1/ebpf``
(``nfaas.ebpf.manager``). So this backend only reports whether the node can
load BPF programs, and an event sent to an eBPF function gets a precise
refusal instead of a cold start.
"""

from __future__ import annotations

from typing import ClassVar

from nfaas.errors import SandboxStartError
from nfaas.sandboxes.base import (
    Event,
    FunctionCode,
    Result,
    Sandbox,
    SandboxBackend,
    SandboxState,
    SandboxStats,
)

NOT_INVOKED = (
    "an eBPF function runs in the kernel on the hook it is attached to and takes no events; "
    "instantiate it on an interface: POST /api/v1/ebpf/instances (nfaas ebpf instantiate)"
)


class EbpfSandbox(Sandbox):
    backend: ClassVar[str] = "ebpf"

    async def prepare(self) -> None:
        self.state = SandboxState.FAILED
        raise SandboxStartError(NOT_INVOKED)

    async def load(self, code: FunctionCode) -> None:
        self.state = SandboxState.FAILED
        raise SandboxStartError(f"{code.ref}: {NOT_INVOKED}")

    async def invoke(self, event: Event) -> Result:
        raise SandboxStartError(NOT_INVOKED)

    async def stats(self) -> SandboxStats:
        return SandboxStats()

    async def aclose(self) -> None:
        self.state = SandboxState.CLOSED


class EbpfBackend(SandboxBackend):
    name: ClassVar[str] = "ebpf"
    code_is_file: ClassVar[bool] = True

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            from nfaas.ebpf.libbpf import libbpf

            libbpf()
        except OSError as exc:
            return False, f"libbpf.so.1 cannot be loaded: {exc} (install libbpf1)"
        return True, "available"

    def create(self) -> Sandbox:
        return EbpfSandbox()
