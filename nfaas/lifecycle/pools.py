"""Runtime resource pools (EVE025 7.2.3).

A pool holds sandboxes on which steps 1-3 of instantiation are done ahead of
any event: allocated, runtime ready, environment configured. An event that
needs a new instance takes one (under its function's maximum quick-start
instance count) and only loads code; the pool refills in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from dataclasses import dataclass

from nfaas.errors import InsufficientCapacity, InvalidRequest, NfaasError
from nfaas.lifecycle.infra import NodeCapacity, Reservation
from nfaas.sandboxes.base import Sandbox, SandboxBackend

log = logging.getLogger(__name__)

MAX_POOL_SIZE = 256


class PoolState(enum.Enum):
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    id: str
    runtime: str
    backend: str
    size: int
    ready: int
    preparing: int
    taken: int
    errors: int
    last_error: str | None


class RuntimePool:
    """Keeps ``size`` prepared sandboxes of one runtime ready to be taken."""

    def __init__(
        self,
        pool_id: str,
        runtime: str,
        backend: SandboxBackend,
        capacity: NodeCapacity,
        *,
        size: int,
        sandbox_memory_mb: int,
    ) -> None:
        self.id = pool_id
        self.runtime = runtime
        self.backend = backend
        self.size = size
        self._capacity = capacity
        self._memory_mb = sandbox_memory_mb
        self._ready: deque[tuple[Sandbox, Reservation]] = deque()
        self._preparing = 0
        self._taken = 0
        self._errors = 0
        self._last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.state = PoolState.RUNNING

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._refill_loop(), name=f"pool:{self.id}")
            self._wake.set()

    def take(self) -> Sandbox | None:
        """A prepared sandbox, or None if the pool is empty; never waits."""
        while self._ready:
            sandbox, reservation = self._ready.popleft()
            self._capacity.release(reservation)
            self._wake.set()
            if sandbox.state.name == "PREPARED":
                self._taken += 1
                return sandbox
            asyncio.get_running_loop().create_task(sandbox.aclose())
        return None

    def resize(self, size: int) -> None:
        if not 0 <= size <= MAX_POOL_SIZE:
            raise InvalidRequest(f"pool size must be between 0 and {MAX_POOL_SIZE}, not {size}")
        self.size = size
        self._wake.set()

    async def _refill_loop(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while len(self._ready) > self.size:
                sandbox, reservation = self._ready.pop()
                self._capacity.release(reservation)
                await sandbox.aclose()
            while len(self._ready) + self._preparing < self.size:
                if not await self._prepare_one():
                    # A failing runtime or a full node: retry later, not in a hot loop.
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    self._wake.set()
                    break
                backoff = 0.05

    async def _prepare_one(self) -> bool:
        try:
            reservation = self._capacity.reserve(self._memory_mb, 0.0, f"pool {self.id}")
        except InsufficientCapacity as exc:
            self._last_error = exc.detail
            return False
        sandbox = self.backend.create()
        self._preparing += 1
        try:
            await sandbox.prepare()
        except (NfaasError, OSError) as exc:
            self._errors += 1
            self._last_error = str(exc)
            log.warning("pool %s: preparing a sandbox failed: %s", self.id, exc)
            self._capacity.release(reservation)
            await sandbox.aclose()
            return False
        except BaseException:
            self._capacity.release(reservation)
            await sandbox.aclose()
            raise
        finally:
            self._preparing -= 1
        self._ready.append((sandbox, reservation))
        return True

    def snapshot(self) -> PoolSnapshot:
        return PoolSnapshot(
            id=self.id,
            runtime=self.runtime,
            backend=self.backend.name,
            size=self.size,
            ready=len(self._ready),
            preparing=self._preparing,
            taken=self._taken,
            errors=self._errors,
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        if self.state is PoolState.CLOSED:
            return
        self.state = PoolState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._ready:
            sandbox, reservation = self._ready.popleft()
            self._capacity.release(reservation)
            await sandbox.aclose()
