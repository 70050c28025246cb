"""The operators an NF is built of, after NetBricks (Panda et al., OSDI 2016).

packet processing   ``Parse``, ``Deparse``, ``Transform``, ``Map``, ``Filter``
bytestream          ``Reassemble`` (``nfaas.nf.reassembly``)
control flow        ``GroupBy`` (into branches, merged back in arrival order), ``Emit``
state               ``Inspect`` with the instance's tables and counters (``nfaas.nf.state``)
event scheduling    timers of the instance (``nfaas.nf.schedule``)

A user callable takes the whole batch and the instance's ``NFContext`` and
answers for every packet at once (a mask, a column, changed header rows). When
it raises, the operator calls it again on each packet alone: the packets it
still raises on are counted as ``<operator>.errors`` and dropped, and the rest
of the batch goes on. Operators hold configuration only; what changes while
packets flow is in the context, so one graph serves any number of instances.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from nfaas.errors import GraphError
from nfaas.nf.batch import PacketBatch
from nfaas.nf.headers import ParseError

if TYPE_CHECKING:
    from nfaas.nf.context import NFContext
    from nfaas.nf.pipeline import Pipeline

BatchFn = Callable[[PacketBatch, "NFContext"], Any]
#: side outputs of a run: port name -> batches sent to it
Outputs = dict[str, list[PacketBatch]]


class Operator(ABC):
    kind: str = "operator"

    def __init__(self, name: str = "") -> None:
        self.name = name

    @abstractmethod
    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        """Process ``batch``; returns what goes on to the next operator."""

    def children(self) -> Sequence[Pipeline]:
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def per_packet(
    fn: BatchFn, batch: PacketBatch, ctx: NFContext, name: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_] | None]:
    """``fn`` over the batch, one answer per packet, and which packets made it raise
    (None: none did).

    The whole batch first; only if that raises, each packet alone.
    """
    try:
        return _column(fn(batch, ctx), len(batch), name), None
    except GraphError:
        raise
    except Exception:
        pass
    failed = np.zeros(len(batch), dtype=np.bool_)
    answers: list[Any] = []
    for i in range(len(batch)):
        try:
            answers.append(_column(fn(batch.select(np.array([i])), ctx), 1, name)[0])
        except GraphError:
            raise
        except Exception:
            failed[i] = True
            answers.append(None)
    like = next((a for a in answers if a is not None), 0)
    filler = (
        np.zeros((), dtype=np.asarray(like).dtype)[()] if not isinstance(like, np.void) else like
    )
    return np.array([filler if a is None else a for a in answers]), failed


def _column(value: Any, n: int, name: str) -> npt.NDArray[Any]:
    column = np.asarray(value)
    if column.ndim == 0:
        column = np.full(n, column)
    if len(column) != n:
        raise GraphError(f"{name} answered {len(column)} values for {n} packets")
    return column


def _drop_failed(
    batch: PacketBatch, failed: npt.NDArray[np.bool_] | None, ctx: NFContext, name: str
) -> PacketBatch:
    if failed is None or not failed.any():
        return batch
    ctx.counters.add(f"{name}.errors", int(failed.sum()))
    return batch.select(~failed)


class Parse(Operator):
    """Read the headers of every frame; drops and counts what is malformed, by reason."""

    kind = "parse"

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        errors = batch.parse()
        bad = errors != ParseError.OK
        if not bad.any():
            return batch
        for code, count in enumerate(np.bincount(errors, minlength=len(ParseError))):
            if code and count:
                ctx.counters.add(f"malformed.{ParseError(code).name.lower()}", int(count))
        return batch.select(~bad)


class Deparse(Operator):
    """Write changed header fields back into the frames and fix their checksums."""

    kind = "deparse"

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        if batch.parsed:
            batch.deparse()
        return batch


class Filter(Operator):
    """Keep the packets for which ``fn`` answers true."""

    kind = "filter"

    def __init__(self, fn: BatchFn, name: str = "") -> None:
        super().__init__(name)
        self.fn = fn

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        answer, failed = per_packet(self.fn, batch, ctx, self.name)
        keep = np.asarray(answer, dtype=np.bool_)
        kept = int(np.count_nonzero(keep))
        if failed is not None:  # a packet that raised was answered False: not a drop, an error
            errors = int(np.count_nonzero(failed))
            ctx.counters.add(f"{self.name}.errors", errors)
            kept -= int(np.count_nonzero(keep & failed))
            keep = keep & ~failed
            ctx.counters.add(f"{self.name}.dropped", len(batch) - kept - errors)
        else:
            ctx.counters.add(f"{self.name}.dropped", len(batch) - kept)
        return batch if kept == len(batch) else batch.select(keep)


class Map(Operator):
    """Add a per-packet column ``into`` to the batch's ``meta`` with what ``fn`` answers."""

    kind = "map"

    def __init__(self, fn: BatchFn, into: str, name: str = "") -> None:
        super().__init__(name)
        self.fn, self.into = fn, into

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        column, failed = per_packet(self.fn, batch, ctx, self.name)
        batch.meta[self.into] = column
        return _drop_failed(batch, failed, ctx, self.name)


class Transform(Operator):
    """Let ``fn`` change header fields in ``batch.headers``; changed packets get deparsed."""

    kind = "transform"

    def __init__(self, fn: BatchFn, name: str = "") -> None:
        super().__init__(name)
        self.fn = fn

    def _changed_rows(self, batch: PacketBatch, ctx: NFContext) -> npt.NDArray[Any]:
        before = batch.headers
        batch.headers = before.copy()
        try:
            self.fn(batch, ctx)
            return batch.headers
        finally:
            batch.headers = before

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        if not batch.parsed:
            raise GraphError(f"{self.name} needs parsed headers: put parse() before it")
        rows, failed = per_packet(self._changed_rows, batch, ctx, self.name)
        if failed is None:
            batch.dirty |= rows != batch.headers
            batch.headers = rows
            return batch
        ok = ~failed
        changed = np.zeros(len(batch), dtype=np.bool_)
        changed[ok] = rows[ok] != batch.headers[ok]
        batch.headers[ok] = rows[ok]
        batch.dirty |= changed
        return _drop_failed(batch, failed, ctx, self.name)


class Inspect(Operator):
    """Call ``fn`` for its effect on the instance's state (counters, tables); packets pass."""

    kind = "inspect"

    def __init__(self, fn: BatchFn, name: str = "") -> None:
        super().__init__(name)
        self.fn = fn

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        try:
            self.fn(batch, ctx)
        except GraphError:
            raise
        except Exception:
            _, failed = per_packet(lambda b, c: self.fn(b, c) or 0, batch, ctx, self.name)
            return _drop_failed(batch, failed, ctx, self.name)
        return batch


class Emit(Operator):
    """Send the batch to the output port ``port`` (deparsing changed packets first)."""

    kind = "emit"

    def __init__(self, port: str, name: str = "") -> None:
        super().__init__(name)
        self.port = port

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        if batch.parsed:
            batch.deparse()
        if len(batch):
            out.setdefault(self.port, []).append(batch)
            ctx.counters.add(f"port.{self.port}", len(batch))
        return PacketBatch.empty()


class GroupBy(Operator):
    """Send each packet down the branch ``key`` names; what branches do not emit is merged.

    ``key(batch, ctx)`` answers a branch index per packet; a packet whose index
    has no branch is counted as ``<name>.unmatched`` and dropped. The merged
    packets continue in the order they arrived in.
    """

    kind = "group_by"

    def __init__(self, key: BatchFn, branches: Sequence[Pipeline], name: str = "") -> None:
        super().__init__(name)
        if not branches:
            raise GraphError("group_by needs at least one branch")
        self.key, self.branches = key, list(branches)

    def children(self) -> Sequence[Pipeline]:
        return self.branches

    def run(self, batch: PacketBatch, ctx: NFContext, out: Outputs) -> PacketBatch:
        keys, raised = per_packet(self.key, batch, ctx, self.name)
        failed = raised if raised is not None else np.zeros(len(batch), dtype=np.bool_)
        keys = np.where(failed, -1, keys.astype(np.int64))
        ctx.counters.add(f"{self.name}.errors", int(failed.sum()))
        unmatched = ~failed & ((keys < 0) | (keys >= len(self.branches)))
        ctx.counters.add(f"{self.name}.unmatched", int(unmatched.sum()))
        batch.meta["_arrival"] = np.arange(len(batch))
        merged = []
        for index, branch in enumerate(self.branches):
            chosen = keys == index
            if chosen.any():
                merged.append(branch.run(batch.select(chosen), ctx, out))
        joined = PacketBatch.concat(merged)
        if len(joined) and "_arrival" in joined.meta:
            joined = joined.select(np.argsort(joined.meta["_arrival"], kind="stable"))
        joined.meta.pop("_arrival", None)
        batch.meta.pop("_arrival", None)
        return joined
