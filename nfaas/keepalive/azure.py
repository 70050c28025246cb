"""Read the Azure Functions 2019 trace (Shahrad et al., "Serverless in the Wild").

Three kinds of files, one per day ``dNN``:

- ``invocations_per_function_md.anon.dNN.csv``:
  ``HashOwner,HashApp,HashFunction,Trigger,1,...,1440`` (invocations per minute);
- ``function_durations_percentiles.anon.dNN.csv``: ``...,HashFunction,Average,Count,...``
  (execution time in milliseconds);
- ``app_memory_percentiles.anon.dNN.csv``: ``HashOwner,HashApp,...,AverageAllocatedMb,...``.

Days are joined in the order of their numbers; a function absent from a day
had no invocations that day. Units are functions (each with its
application's memory, as if deployed alone, which is how nfaas deploys) or
applications (the paper's unit: their functions' counts added). Anything
malformed is a ``TraceError`` naming the file and the line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from nfaas.errors import TraceError
from nfaas.keepalive.trace import MINUTES_PER_DAY, Trace

INVOCATIONS = "invocations_per_function_md.anon.d*.csv"
DURATIONS = "function_durations_percentiles.anon.d*.csv"
MEMORY = "app_memory_percentiles.anon.d*.csv"
INVOCATION_HEADER = ["HashOwner", "HashApp", "HashFunction", "Trigger"] + [
    str(m) for m in range(1, MINUTES_PER_DAY + 1)
]
DEFAULT_MEMORY_MB = 128.0
DEFAULT_DURATION_S = 1.0
Unit = Literal["function", "application"]

if TYPE_CHECKING:
    from numpy.typing import NDArray
FunctionKey = tuple[str, str, str]


@dataclass(frozen=True)
class AzureFiles:
    invocations: list[Path]
    durations: list[Path]
    memory: list[Path]


def find_files(folder: Path, days: int | None = None) -> AzureFiles:
    """The trace's files in ``folder``, by day; ``days`` keeps the first ones."""
    if not folder.is_dir():
        raise TraceError("not a folder", file=str(folder))
    invocations = sorted(folder.glob(INVOCATIONS), key=_day)[:days]
    if not invocations:
        raise TraceError(f"no {INVOCATIONS} files", file=str(folder))
    wanted = {_day(p) for p in invocations}
    pick = [p for p in sorted(folder.glob(DURATIONS), key=_day) if _day(p) in wanted]
    memory = [p for p in sorted(folder.glob(MEMORY), key=_day) if _day(p) in wanted]
    return AzureFiles(invocations, pick, memory)


def _day(path: Path) -> int:
    match = re.search(r"\.d(\d+)\.csv$", path.name)
    return int(match.group(1)) if match else 0


def read_trace(files: AzureFiles, unit: Unit = "function") -> Trace:
    """One trace of every function (or application) over the days of ``files``."""
    days = [_read_invocations(p) for p in files.invocations]
    keys = sorted({k for day in days for k in day})
    index = {k: i for i, k in enumerate(keys)}
    counts = np.zeros((len(keys), MINUTES_PER_DAY * len(days)), dtype=np.int32)
    triggers: dict[FunctionKey, str] = {}
    for d, day in enumerate(days):
        for key, (trigger, row) in day.items():
            counts[index[key], d * MINUTES_PER_DAY : (d + 1) * MINUTES_PER_DAY] = row
            triggers.setdefault(key, trigger)
    memory = _mean_by_key(_read_memory(p) for p in files.memory)
    durations = _mean_by_key(_read_durations(p) for p in files.durations)
    # A unit missing from a side file (the memory file covers only some apps) gets the
    # median of the others.
    mem_default = _median(memory, DEFAULT_MEMORY_MB)
    dur_default = _median(durations, DEFAULT_DURATION_S)
    fn_memory = np.array([memory.get(k[:2], mem_default) for k in keys])
    fn_duration = np.array([durations.get(k, dur_default) for k in keys])
    kinds = tuple(triggers[k] for k in keys)
    if unit == "application":
        return _by_application(keys, counts, kinds, fn_memory, fn_duration)
    return Trace(
        names=tuple("/".join(k) for k in keys),
        counts=counts,
        memory_mb=fn_memory,
        duration_s=fn_duration,
        kinds=kinds,
    )


def _by_application(
    keys: list[FunctionKey],
    counts: NDArray[np.int32],
    kinds: tuple[str, ...],
    fn_memory: NDArray[np.float64],
    fn_duration: NDArray[np.float64],
) -> Trace:
    """The paper's unit: an application's functions share its instances and memory."""
    apps = sorted({k[:2] for k in keys})
    row_of = {a: i for i, a in enumerate(apps)}
    rows = np.array([row_of[k[:2]] for k in keys], dtype=np.int64)
    summed = np.zeros((len(apps), counts.shape[1]), dtype=np.int64)
    np.add.at(summed, rows, counts)
    weight = counts.sum(axis=1, dtype=np.int64).astype(np.float64) + 1e-9
    duration = np.bincount(rows, fn_duration * weight, len(apps)) / np.bincount(
        rows, weight, len(apps)
    )
    first: dict[tuple[str, ...], int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k[:2], i)
    return Trace(
        names=tuple("/".join(a) for a in apps),
        counts=np.minimum(summed, np.iinfo(np.int32).max).astype(np.int32),
        memory_mb=np.array([fn_memory[first[a]] for a in apps]),
        duration_s=duration,
        kinds=tuple(kinds[first[a]] for a in apps),
    )


def _median(values: dict[tuple[str, ...], float], default: float) -> float:
    """What a unit missing from a side file gets: the median of the others."""
    return float(np.median(list(values.values()))) if values else default


def _mean_by_key(days: Iterator[dict[tuple[str, ...], float]]) -> dict[tuple[str, ...], float]:
    sums: dict[tuple[str, ...], list[float]] = {}
    for day in days:
        for key, value in day.items():
            sums.setdefault(key, []).append(value)
    return {k: float(np.mean(v)) for k, v in sums.items()}


class _Rows:
    """The rows of a CSV file, streamed, with line numbers and the header checked present."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = path.open(encoding="utf-8", newline="")
            self._reader = csv.reader(self._file)
            self.header = next(self._reader, None)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise TraceError(f"cannot read: {exc}", file=str(path)) from None
        if self.header is None:
            self._file.close()
            raise TraceError("empty file: no header", file=str(path), line=1)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        try:
            while True:
                try:
                    fields = next(self._reader, None)
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise self.error(f"unreadable: {exc}") from None
                if fields is None:
                    return
                yield self._reader.line_num, fields
        finally:
            self._file.close()

    def at_end(self) -> bool:
        """Whether the row just read was the last (a short last row: a truncated file)."""
        try:
            return next(self._reader, None) is None
        except (csv.Error, UnicodeDecodeError):
            return False

    def error(self, detail: str, line: int | None = None) -> TraceError:
        return TraceError(detail, file=str(self.path), line=line or self._reader.line_num)


def _read_invocations(path: Path) -> dict[FunctionKey, tuple[str, NDArray[np.int64]]]:
    out: dict[FunctionKey, tuple[str, NDArray[np.int64]]] = {}
    rows = _Rows(path)
    header = rows.header or []
    if header != INVOCATION_HEADER:
        raise rows.error(
            f"header is not HashOwner,HashApp,HashFunction,Trigger,1..{MINUTES_PER_DAY} "
            f"({len(header)} fields, starting {','.join(header[:5])})",
            line=1,
        )
    for number, fields in rows:
        if len(fields) != len(INVOCATION_HEADER):
            hint = " (the file ends there: truncated?)" if rows.at_end() else ""
            raise rows.error(f"{len(fields)} fields, not {len(INVOCATION_HEADER)}{hint}", number)
        key = (fields[0], fields[1], fields[2])
        if key in out:
            raise rows.error(f"function {'/'.join(key)} appears twice", number)
        out[key] = (fields[3], _counts(fields[4:], path, number))
    return out


def _counts(fields: list[str], path: Path, line: int) -> NDArray[np.int64]:
    try:
        row = np.array(fields, dtype=np.int64)
    except ValueError:
        row = None
    if row is None or (row < 0).any():
        bad = next(i for i, f in enumerate(fields) if not f.isdigit())
        raise TraceError(
            f"minute {bad + 1}: {fields[bad]!r} is not a count of invocations",
            file=str(path),
            line=line,
        )
    return np.minimum(row, np.iinfo(np.int32).max)


def _read_table(path: Path, key_columns: Sequence[str], value: str) -> dict[tuple[str, ...], float]:
    rows = _Rows(path)
    header = rows.header or []
    missing = [c for c in (*key_columns, value) if c not in header]
    if missing:
        raise rows.error(f"header lacks {', '.join(missing)}", line=1)
    where = [header.index(c) for c in key_columns]
    at = header.index(value)
    out: dict[tuple[str, ...], float] = {}
    for number, fields in rows:
        if len(fields) != len(header):
            hint = " (the file ends there: truncated?)" if rows.at_end() else ""
            raise rows.error(f"{len(fields)} fields, not {len(header)}{hint}", number)
        try:
            parsed = float(fields[at])
        except ValueError:
            parsed = float("nan")
        if not parsed >= 0:  # NaN too
            raise rows.error(f"{value} is {fields[at]!r}, not a non-negative number", number)
        out[tuple(fields[i] for i in where)] = parsed
    return out


def _read_memory(path: Path) -> dict[tuple[str, ...], float]:
    return _read_table(path, ("HashOwner", "HashApp"), "AverageAllocatedMb")


def _read_durations(path: Path) -> dict[tuple[str, ...], float]:
    table = _read_table(path, ("HashOwner", "HashApp", "HashFunction"), "Average")
    return {k: v / 1000.0 for k, v in table.items()}  # milliseconds in the trace
