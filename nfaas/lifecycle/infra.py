"""Infrastructure management: the node's capacity and the reservations held against it.

Every instance reserves the memory and CPU its descriptor asks for; a
reservation that would overcommit the node is refused with the numbers, and
deleting an instance releases what it held (EVE025 use case #4).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from nfaas.errors import InsufficientCapacity, InvalidRequest


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int
    memory_mb: int
    cpu: float
    holder: str


def measured_capacity() -> tuple[int, float]:
    """80 % of the node's memory (the rest is the platform's and the kernel's) and all its cores."""
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return int(total_kb / 1024 * 0.8), float(os.cpu_count() or 1)


class NodeCapacity:
    """Memory and CPU of this node, and who holds how much of it.

    Memory is never overcommitted: that is what keeps one tenant's burst from
    pushing the node into the OOM killer. CPU reservations may add up to the
    cores times ``cpu_overcommit`` (1.0 by default: no overcommit), since an
    operator of I/O-bound network functions may choose to share cores.
    """

    def __init__(self, memory_mb: int, cpu: float, *, cpu_overcommit: float = 1.0) -> None:
        self.memory_mb = memory_mb
        self.cpu = cpu
        self.cpu_overcommit = cpu_overcommit
        self._held: dict[int, Reservation] = {}
        self._ids = itertools.count(1)

    @property
    def memory_reserved_mb(self) -> int:
        return sum(r.memory_mb for r in self._held.values())

    @property
    def cpu_reserved(self) -> float:
        return sum(r.cpu for r in self._held.values())

    def reserve(self, memory_mb: int, cpu: float, holder: str) -> Reservation:
        free_mb = self.memory_mb - self.memory_reserved_mb
        if memory_mb > free_mb:
            raise InsufficientCapacity(
                f"{holder} needs {memory_mb} MB of memory, the node has {free_mb} MB free "
                f"of {self.memory_mb} MB",
            )
        cpu_limit = self.cpu * self.cpu_overcommit
        if self.cpu_reserved + cpu > cpu_limit + 1e-9:
            raise InsufficientCapacity(
                f"{holder} needs {cpu:g} CPU, the node has {cpu_limit - self.cpu_reserved:g} "
                f"of {cpu_limit:g} (cores x overcommit {self.cpu_overcommit:g}) free",
            )
        reservation = Reservation(next(self._ids), memory_mb, cpu, holder)
        self._held[reservation.id] = reservation
        return reservation

    def release(self, reservation: Reservation | None) -> None:
        """Idempotent: releasing twice, or releasing None, does nothing."""
        if reservation is not None:
            self._held.pop(reservation.id, None)

    def resize(self, memory_mb: int | None = None, cpu: float | None = None) -> None:
        """Operator change of capacity; refused below what is reserved now."""
        if memory_mb is not None:
            if memory_mb < self.memory_reserved_mb:
                raise InvalidRequest(
                    f"cannot set memory to {memory_mb} MB: {self.memory_reserved_mb} MB are reserved"
                )
            self.memory_mb = memory_mb
        if cpu is not None:
            if cpu <= 0:
                raise InvalidRequest("cpu must be positive")
            if cpu * self.cpu_overcommit < self.cpu_reserved - 1e-9:
                raise InvalidRequest(
                    f"cannot set cpu to {cpu:g}: {self.cpu_reserved:g} are reserved"
                )
            self.cpu = cpu

    def snapshot(self) -> dict[str, float]:
        return {
            "memory_mb": self.memory_mb,
            "memory_reserved_mb": self.memory_reserved_mb,
            "cpu": self.cpu,
            "cpu_reserved": round(self.cpu_reserved, 3),
            "cpu_overcommit": self.cpu_overcommit,
            "reservations": len(self._held),
        }
