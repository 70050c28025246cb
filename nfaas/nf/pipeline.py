"""Building an NF as a graph of operators, and running instances of it.

    nf = NetworkFunction("firewall")
    nf.pipeline.parse().filter(acl.allows, name="acl").emit("out")
    instance = nf.instance()
    outputs = instance.process(batch)        # {"out": PacketBatch}

A ``Pipeline`` is a chain of operators; ``group_by`` splits it into branch
pipelines, and what the branches do not ``emit`` is merged back into the
chain: the graph is a directed acyclic graph whose every path ends at an
output port. What reaches the end of the main pipeline goes to port ``out``.

A ``NetworkFunction`` is the description (graph, declared tables, counters
and timers); ``NFInstance`` is one running copy with its own state, so the
same description can run as several instances behind a flow-hash split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from nfaas.errors import GraphError
from nfaas.nf.batch import PacketBatch
from nfaas.nf.context import NFContext
from nfaas.nf.operators import (
    BatchFn,
    Deparse,
    Emit,
    Filter,
    GroupBy,
    Inspect,
    Map,
    Operator,
    Outputs,
    Parse,
    Transform,
)
from nfaas.nf.reassembly import Reassemble, StreamCallback
from nfaas.nf.state import CounterSet, FlowTable

DEFAULT_PORT = "out"


class Pipeline:
    """A chain of operators; every method adds one and returns the pipeline."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.operators: list[Operator] = []

    def _add(self, op: Operator) -> Pipeline:
        if self.operators and isinstance(self.operators[-1], Emit):
            raise GraphError(f"nothing may follow emit({self.operators[-1].port!r})")
        self.operators.append(op)
        return self

    def parse(self, name: str = "") -> Pipeline:
        return self._add(Parse(name))

    def deparse(self, name: str = "") -> Pipeline:
        return self._add(Deparse(name))

    def filter(self, fn: BatchFn, name: str = "") -> Pipeline:
        return self._add(Filter(fn, name))

    def map(self, fn: BatchFn, into: str, name: str = "") -> Pipeline:
        return self._add(Map(fn, into, name))

    def transform(self, fn: BatchFn, name: str = "") -> Pipeline:
        return self._add(Transform(fn, name))

    def inspect(self, fn: BatchFn, name: str = "") -> Pipeline:
        return self._add(Inspect(fn, name))

    def group_by(self, key: BatchFn, branches: Sequence[Pipeline], name: str = "") -> Pipeline:
        return self._add(GroupBy(key, branches, name))

    def reassemble(
        self, on_data: StreamCallback, *, max_buffered: int = 1 << 16, name: str = ""
    ) -> Pipeline:
        return self._add(Reassemble(on_data, max_buffered=max_buffered, name=name))

    def emit(self, port: str = DEFAULT_PORT, name: str = "") -> Pipeline:
        return self._add(Emit(port, name))

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        for op in self.operators:
            if not len(batch):
                break
            before = len(batch)
            batch = op.run(batch, ctx, out)
            ctx.counters.add(f"{op.name}.in", before)
        return batch

    def walk(self) -> list[Operator]:
        """Every operator of this pipeline and of its branches, depth first."""
        found: list[Operator] = []
        for op in self.operators:
            found.append(op)
            for child in op.children():
                found.extend(child.walk())
        return found


class NetworkFunction:
    """An NF: its operator graph, the state it declares, its periodic work."""

    def __init__(self, name: str, **config: Any) -> None:
        self.name = name
        self.config = config
        self.pipeline = Pipeline(name)
        self._tables: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, int] = {}
        self._timers: list[tuple[float, Callable[[NFContext], None], str]] = []

    def table(
        self, name: str, dtype: npt.DTypeLike = np.int64, *, idle_timeout_s: float = 60.0,
        max_flows: int = 1 << 20, expire_every_s: float | None = None,
    ) -> NetworkFunction:  # fmt: skip
        """Declare a per-flow table; its idle flows are expired every ``expire_every_s``
        (default: the idle timeout)."""
        self._tables[name] = {
            "dtype": dtype,
            "idle_timeout_s": idle_timeout_s,
            "max_flows": max_flows,
        }
        period = expire_every_s or idle_timeout_s
        self.every(period, lambda ctx: _expire(ctx, name), name=f"expire.{name}")
        return self

    def counter(self, name: str, size: int = 1) -> NetworkFunction:
        self._counters[name] = size
        return self

    def every(
        self, interval_s: float, callback: Callable[[NFContext], None], name: str = ""
    ) -> NetworkFunction:
        self._timers.append((interval_s, callback, name))
        return self

    def check(self) -> None:
        """Name every operator uniquely; raises ``GraphError`` for a graph that cannot run."""
        seen: set[str] = set()
        for i, op in enumerate(self.pipeline.walk()):
            if not op.name:
                op.name = f"{op.kind}{i}"
            if op.name in seen:
                raise GraphError(f"two operators are named {op.name!r}")
            seen.add(op.name)

    def instance(
        self, *, clock: Callable[[], float] = time.monotonic, shard: int = 0, shards: int = 1
    ) -> NFInstance:
        self.check()
        tables = {name: FlowTable(name, **spec) for name, spec in self._tables.items()}
        ctx = NFContext(
            self.name, clock, tables=tables, shard=shard, shards=shards, config=self.config
        )
        for name, size in self._counters.items():
            ctx.counters.declare(name, size)
        for interval, callback, timer_name in self._timers:
            ctx.every(interval, callback, timer_name)
        return NFInstance(self, ctx)


def _expire(ctx: NFContext, table: str) -> None:
    ctx.counters.add(f"{table}.expired", ctx.table(table).expire(ctx.now))


class NFInstance:
    """One running copy of an NF, with state of its own."""

    def __init__(self, nf: NetworkFunction, ctx: NFContext) -> None:
        self.nf = nf
        self.ctx = ctx

    @property
    def counters(self) -> CounterSet:
        return self.ctx.counters

    def process(self, batch: PacketBatch) -> dict[str, PacketBatch]:
        """Run due timers, then the batch through the graph; the batches each port got."""
        self.tick()
        out: Outputs = {}
        self.ctx.counters.add("received", len(batch))
        rest = self.nf.pipeline.run(batch, self.ctx, out)
        if len(rest):
            Emit(DEFAULT_PORT).run(rest, self.ctx, out)
        return {port: PacketBatch.concat(batches) for port, batches in out.items()}

    def tick(self) -> int:
        """Run the timers that are due; returns how many ran."""
        self.ctx.now = self.ctx.clock()
        return self.ctx.scheduler.run_due(self.ctx.now, self.ctx)

    def stats(self) -> dict[str, Any]:
        return {
            "counters": self.ctx.counters.snapshot(),
            "tables": {name: len(t) for name, t in self.ctx.tables.items()},
            "timers": dict(self.ctx.scheduler.runs),
            "timer_errors": dict(self.ctx.scheduler.errors),
        }
