"""The sandbox contract every virtualisation form implements.

EVE025 7.2.3 splits instantiation in two: steps 1-3 are common to every
function of a runtime and can be done ahead of any event (``prepare``), steps
4-5 load one function's code (``load``). A runtime pool holds prepared
sandboxes; function management loads code into one when an event needs it.

A backend (``SandboxBackend``) owns what its sandboxes share (a warm zygote, a
wasmtime engine) and makes sandboxes. A sandbox is one instance's isolation
unit and goes NEW -> PREPARED -> LOADED -> CLOSED, or FAILED when it breaks;
``aclose`` is idempotent and releases everything in every state.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self


class SandboxState(enum.Enum):
    NEW = "new"
    PREPARED = "prepared"
    LOADED = "loaded"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one sandbox; the function's own, applied at ``load``."""

    memory_mb: int = 128
    cpu: float = 0.5
    timeout_s: float = 10.0
    concurrency: int = 1
    #: Wasm only: fuel per invocation
    fuel: int | None = None


@dataclass(frozen=True, slots=True)
class WasiGrant:
    stdout: bool = False
    stderr: bool = True
    env: bool = False
    #: guest path -> host folder, read-only
    preopens: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FunctionCode:
    """Everything a sandbox needs to load one function version (EVE025 7.2.3 steps 4-5)."""

    app: str
    name: str
    version: str
    #: python: "module:function"; wasm: the exported function name
    handler: str
    #: a folder (python) or a module file (.wasm/.wat) on the local disk, unpacked from the store
    path: Path
    limits: Limits = field(default_factory=Limits)
    environment: dict[str, str] = field(default_factory=dict)
    wasi: WasiGrant | None = None
    #: Wasm: a precompiled module (wasmtime serialize) made at onboarding, if any
    compiled_path: Path | None = None

    @property
    def ref(self) -> str:
        return f"{self.app}/{self.name}@{self.version}"


@dataclass(slots=True)
class Event:
    """One event as a function sees it.

    ``trigger`` is "http", "udp", "tcp", "timer" or "invoke"; ``meta`` holds the
    trigger's details (HTTP method, path, query, headers; UDP peer; timer tick).
    """

    trigger: str
    body: bytes = b""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    """What a function returned: bytes and their media type.

    ``first_line_at`` is ``time.monotonic()`` when the handler began, read in
    the sandbox (CLOCK_MONOTONIC is shared by every process on the host), so
    function management can measure a cold start to the function's first line.
    """

    body: bytes
    content_type: str = "application/octet-stream"
    first_line_at: float | None = None


@dataclass(frozen=True, slots=True)
class SandboxStats:
    #: resident memory of the sandbox, bytes (0 if unknown)
    rss_bytes: int = 0
    #: CPU time consumed (user + system), seconds
    cpu_seconds: float = 0.0


class Sandbox(ABC):
    """One isolation unit: prepared for a runtime, then loaded with one function."""

    backend: ClassVar[str]

    def __init__(self) -> None:
        self.state = SandboxState.NEW

    @abstractmethod
    async def prepare(self) -> None:
        """Steps 1-3: everything common to the runtime. NEW -> PREPARED."""

    @abstractmethod
    async def load(self, code: FunctionCode) -> None:
        """Steps 4-5: load and initialise one function. PREPARED -> LOADED.

        Raises ``SandboxStartError`` when the code cannot be loaded (import
        error, missing handler, invalid module); the sandbox is then FAILED.
        """

    @abstractmethod
    async def invoke(self, event: Event) -> Result:
        """Run the function on one event, within the limits given at load.

        Raises a ``FunctionFailure``: ``FunctionRaised`` leaves the sandbox
        usable; the others (crash, timeout, out of memory) leave it FAILED.
        """

    @abstractmethod
    async def stats(self) -> SandboxStats:
        """Resident memory and CPU time used so far."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release everything; idempotent, safe in every state and when cancelled."""

    @property
    def usable(self) -> bool:
        return self.state is SandboxState.LOADED

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SandboxBackend(ABC):
    """Makes sandboxes of one virtualisation form and owns what they share."""

    name: ClassVar[str]
    #: whether ``FunctionCode.path`` should name the code file itself when the code is
    #: one file (a Wasm module), rather than the folder holding it (Python sources)
    code_is_file: ClassVar[bool] = False

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether this machine can run the backend, and if not, why."""
        return True, "available"

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Start shared machinery (a zygote, an engine). Called once before ``create``."""

    @abstractmethod
    def create(self) -> Sandbox:
        """A new sandbox in state NEW; the caller prepares, loads and closes it."""

    async def compile(self, code: FunctionCode, dest: Path) -> Path | None:
        """Onboarding-time work on code (e.g. precompiling Wasm into ``dest``, a folder).

        Returns the artefact's path, later passed back as ``FunctionCode.compiled_path``.

        Raises ``SandboxStartError`` when the code is not valid for this backend.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Stop shared machinery; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
