"""The records the state store reads and writes; plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: (application, function, version): one function version of the code repository
VersionKey = tuple[str, str, str]
#: (application, function)
FunctionKey = tuple[str, str]


@dataclass(frozen=True)
class TokenRecord:
    hash: str
    tenant: str
    role: str
    name: str
    created_at: float


@dataclass(frozen=True)
class PackageRecord:
    id: str
    tenant: str
    onboarding_state: str
    operational_state: str
    created_at: float
    updated_at: float
    kind: str | None = None
    app: str | None = None
    version: str | None = None
    sha256: str | None = None
    error: str | None = None
    descriptor: dict[str, Any] | None = None
    functions: list[str] = field(default_factory=list)
    #: computed when read, never stored: whether one of its function versions is the
    #: one events of that function go to (SOL005 usageState IN_USE)
    in_use: bool = False


@dataclass(frozen=True)
class FunctionRecord:
    """A stored function version.

    ``package_id`` is the package that stored it; once that one is deleted, the newest
    package still shipping it. Which packages ship a version is the link table's to say.
    """

    app: str
    name: str
    version: str
    tenant: str
    package_id: str
    descriptor: dict[str, Any]
    code_tree: str
    compiled: str | None
    created_at: float

    @property
    def key(self) -> VersionKey:
        return (self.app, self.name, self.version)


@dataclass(frozen=True)
class RuntimeRecord:
    name: str
    version: str
    backend: str
    description: str = ""
    builtin: bool = False
    sandbox_memory_mb: int = 16
    created_at: float = 0.0
    #: what the backend runs, kept apart (key issue #7.2): a microVM's kernel, root
    #: filesystem and boot parameters, with the digest of the whole
    artefacts: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class PoolRecord:
    id: str
    runtime_name: str
    runtime_version: str
    size: int
