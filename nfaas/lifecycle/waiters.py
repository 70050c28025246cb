"""The events waiting for a slot of one function version: FIFO, bounded, with a deadline.

EVE025 use case #3: an event that finds no free slot waits here, either for
an instance it caused to be created (bounded by the instantiation itself) or,
above the instance threshold, *queued*: counted against ``queue_size`` and
failed with ``Overloaded`` once ``queue_timeout_s`` has passed. A full queue
or a passed deadline is a clear answer, never a silent drop; ``overloaded``
counts both by reason.

A slot that frees up, or the slots of a new instance, go to the first waiter
the instance may serve: any waiter, except that under flow affinity
(``affinity.py``) a waiter with a flow is served only by the instance its
flow belongs to, so the queue skips it for the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nfaas.errors import Overloaded
from nfaas.lifecycle.affinity import owner
from nfaas.lifecycle.instances import FunctionInstance

#: the instance an event got a slot on, and whether it waited for that instance's creation
Slot = tuple[FunctionInstance, bool]


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Slot]
    #: counted against queue_size (it waits for a slot, not for an instance it caused)
    queued: bool
    #: the event's flow under flow affinity: only the flow's instance may serve it
    flow: int | None = None


class WaiterQueue:
    """The events of one function version waiting for a slot, in arrival order."""

    def __init__(
        self, ref: str, queue_timeout_s: float, *, give_back: Callable[[FunctionInstance], None]
    ) -> None:
        self._ref = ref
        self._timeout_s = queue_timeout_s
        #: returns a slot handed over to a waiter that gave up at that very moment
        self._give_back = give_back
        #: a waiter leaves the deque whenever its future is settled (handed a slot,
        #: failed, abandoned), so every waiter here is pending
        self._waiters: deque[_Waiter] = deque()
        self._queued = 0
        self.overloaded = {"queue_full": 0, "queue_timeout": 0}

    def __len__(self) -> int:
        return len(self._waiters)

    @property
    def queued(self) -> int:
        """How many waiters are queued (counted against queue_size)."""
        return self._queued

    @property
    def has_flows(self) -> bool:
        return any(w.flow is not None for w in self._waiters)

    def refuse(self, detail: str) -> Overloaded:
        """The answer to an event that finds the queue full, counted."""
        self.overloaded["queue_full"] += 1
        return Overloaded(detail, reason="queue_full")

    async def wait(self, *, queued: bool, flow: int | None) -> Slot:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Slot] = loop.create_future()
        waiter = _Waiter(future, queued, flow)
        self._waiters.append(waiter)
        self._queued += queued
        # A queued event waits at most queue_timeout_s; one waiting for an instance it
        # caused is bounded by the instantiation itself.
        timer = loop.call_later(self._timeout_s, self._expire, waiter) if queued else None
        try:
            return await future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        self._waiters.remove(waiter)
        self._queued -= waiter.queued
        self.overloaded["queue_timeout"] += 1
        waiter.future.set_exception(
            Overloaded(
                f"{self._ref}: no instance became free within {self._timeout_s:g} s",
                reason="queue_timeout",
            )
        )

    def _abandon(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
            self._queued -= waiter.queued
        except ValueError:
            pass
        if (
            waiter.future.done()
            and not waiter.future.cancelled()
            and waiter.future.exception() is None
        ):
            # A slot was handed over at the very moment we gave up: give it back.
            instance, _ = waiter.future.result()
            self._give_back(instance)
        else:
            waiter.future.cancel()

    def hand_to(
        self,
        instance: FunctionInstance,
        *,
        cold: bool,
        members: Callable[[], list[FunctionInstance]],
        any_flow: bool,
    ) -> bool:
        """Give one slot of ``instance`` to the first waiter it may serve; whether one took it.

        ``members`` are the instances flows are placed on; with ``any_flow`` (a retired
        version, whose flows have nowhere else to go) every waiter may take the slot.
        """
        while (waiter := self._next_for(instance, members, any_flow)) is not None:
            self._waiters.remove(waiter)
            self._queued -= waiter.queued
            if waiter.future.done():
                continue
            instance.in_flight += 1
            waiter.future.set_result((instance, cold))
            return True
        return False

    def _next_for(
        self,
        instance: FunctionInstance,
        members: Callable[[], list[FunctionInstance]],
        any_flow: bool,
    ) -> _Waiter | None:
        """The first waiter ``instance`` may serve: any, except one whose flow is elsewhere."""
        placed_on: list[FunctionInstance] | None = None
        for waiter in self._waiters:
            if waiter.flow is None or any_flow:
                return waiter
            placed_on = members() if placed_on is None else placed_on
            if owner(waiter.flow, placed_on) is instance:
                return waiter
        return None

    def fail(self, exc: BaseException, count: int) -> None:
        """Fail the first ``count`` pending waiters with ``exc``."""
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            self._queued -= waiter.queued
            if not waiter.future.done():
                waiter.future.set_exception(exc)
                count -= 1
