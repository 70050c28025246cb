"""The per-invocation CPU budget of a process-backend worker, kept from the platform's side.

EVE025 7.2.1.2: resource limits keep functions from interfering with each other,
and CPU time is one. A function's limits give it ``cpu`` cores for at most
``timeout_s``; ``ProcessSandbox`` gives its worker a ``CpuBudget`` of
``max(1 s, cpu x timeout_s)`` CPU seconds per invocation, and the worker is
killed past it. Why from outside, and not as an rlimit the worker keeps, is in
the class's docstring.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable

#: the shortest wait between two looks at a worker's CPU time
CPU_CHECK_MIN_S = 0.01
#: the most CPU seconds a process can use per second of wall time
_CORES = os.cpu_count() or 1


class CpuBudget:
    """One worker's CPU time per invocation, enforced from the platform's side.

    The worker cannot keep it itself: once unprivileged it could raise its own
    soft RLIMIT_CPU up to the hard one, and the hard one, once lowered, can be
    raised again for the next invocation only with CAP_SYS_RESOURCE, which even
    root lacks in many containers. So the platform reads the worker's CPU clock
    and kills it (through its pidfd) once it is past the CPU time it had used when
    the latest invocation began plus one budget per invocation in flight: what
    re-arming RLIMIT_CPU per invocation did, to the millisecond instead of the
    second. It looks again when the worker could have reached that at the
    earliest, busy on every core, so it overshoots by at most
    cores x ``CPU_CHECK_MIN_S``. The limit stands between invocations too, so a
    thread left spinning after its invocation ended is stopped all the same.
    """

    def __init__(self, pid: int, budget_s: float, exceeded: Callable[[float], None]) -> None:
        # glibc's clock_getcpuclockid(pid): the CPU time of the whole process
        self._clock = (~pid << 3) | 2
        self.budget_s = budget_s
        self._exceeded = exceeded
        self._limit = math.inf
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, in_flight: int) -> None:
        """An invocation begins, ``in_flight`` with it."""
        used = self._used()
        if used is None:
            return
        self._limit = used + self.budget_s * in_flight
        timer = self._timer
        if timer is None or timer.when() > asyncio.get_running_loop().time() + self._delay(used):
            self._look_again(used)
        # else the look already due comes soon enough (usual: the limit only moved up)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        used = self._used()
        if used is None:
            return  # the worker is gone; how is reported by its exit
        if used >= self._limit:
            self._exceeded(used)
        else:
            self._look_again(used)

    def _look_again(self, used: float) -> None:
        self.stop()
        self._timer = asyncio.get_running_loop().call_later(self._delay(used), self._check)

    def _delay(self, used: float) -> float:
        """The soonest the worker can reach its limit: busy on every core from now."""
        return max(CPU_CHECK_MIN_S, (self._limit - used) / _CORES)

    def _used(self) -> float | None:
        try:
            return time.clock_gettime(self._clock)
        except OSError:  # reaped: the clock is gone
            return None
