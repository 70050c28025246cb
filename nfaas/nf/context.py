"""What an NF's callables get besides the batch: their instance's state, clock and place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nfaas.errors import GraphError
from nfaas.nf.schedule import Scheduler
from nfaas.nf.state import CounterSet, FlowTable


class NFContext:
    """One instance's state: flow tables, counters, timers, and operator-private state.

    ``shard`` and ``shards`` say which of the NF's instances this is, for NFs
    that split work by flow hash (``nfaas.nf.flowhash.shard_of``).
    """

    def __init__(
        self,
        name: str,
        clock: Callable[[], float],
        *,
        tables: dict[str, FlowTable] | None = None,
        shard: int = 0,
        shards: int = 1,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.tables = tables or {}
        self.counters = CounterSet()
        self.scheduler = Scheduler()
        self.shard, self.shards = shard, shards
        #: the NF's own settings (back-ends, rules...), as the NF was built with them
        self.config = config or {}
        #: operators that keep per-instance state (a reassembler's streams) keep it here
        self.private: dict[str, Any] = {}
        #: the time of the batch being processed (the clock is read once per batch)
        self.now = clock()

    def table(self, name: str) -> FlowTable:
        try:
            return self.tables[name]
        except KeyError:
            raise GraphError(
                f"no flow table {name!r}: declare it with NetworkFunction.table"
            ) from None

    def every(
        self, interval_s: float, callback: Callable[[NFContext], None], name: str = ""
    ) -> None:
        self.scheduler.every(interval_s, callback, now=self.clock(), name=name)

    def after(self, delay_s: float, callback: Callable[[NFContext], None], name: str = "") -> None:
        self.scheduler.after(delay_s, callback, now=self.clock(), name=name)
