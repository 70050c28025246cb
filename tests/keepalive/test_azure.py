from __future__ import annotations

from pathlib import Path

import pytest

from nfaas.errors import TraceError
from nfaas.keepalive.azure import INVOCATION_HEADER, find_files, read_trace

MIN = 1440


def inv_row(owner: str, app: str, fn: str, trigger: str, at: dict[int, int]) -> str:
    counts = [0] * MIN
    for minute, n in at.items():
        counts[minute] = n
    return ",".join([owner, app, fn, trigger, *map(str, counts)])


def write_day(folder: Path, day: int, rows: list[str]) -> Path:
    path = folder / f"invocations_per_function_md.anon.d{day:02d}.csv"
    path.write_text(",".join(INVOCATION_HEADER) + "\n" + "".join(r + "\n" for r in rows))
    return path


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    write_day(tmp_path, 1, [inv_row("o", "a", "f1", "http", {0: 2, 10: 1}),
                            inv_row("o", "a", "f2", "timer", {5: 1})])  # fmt: skip
    write_day(tmp_path, 2, [inv_row("o", "a", "f1", "http", {3: 4}),
                            inv_row("o", "b", "g", "queue", {100: 1})])  # fmt: skip
    (tmp_path / "function_durations_percentiles.anon.d01.csv").write_text(
        "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum\n"
        "o,a,f1,2000,3,1,5000\no,a,f2,500,1,500,500\n"
    )
    (tmp_path / "app_memory_percentiles.anon.d01.csv").write_text(
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1\no,a,10,256,200\n"
    )
    return tmp_path


def test_days_are_joined_per_function_with_memory_and_durations(trace_dir: Path) -> None:
    trace = read_trace(find_files(trace_dir))
    assert trace.names == ("o/a/f1", "o/a/f2", "o/b/g")
    assert trace.minutes == 2 * MIN and trace.invocations == 2 + 1 + 1 + 4 + 1
    f1 = trace.counts[0]
    assert (f1[0], f1[10], f1[MIN + 3]) == (2, 1, 4)
    assert trace.counts[2, MIN + 100] == 1  # absent on day 1: zeros there
    assert list(trace.memory_mb) == [256.0, 256.0, 256.0]  # b unknown: the median of the others
    assert list(trace.duration_s) == [2.0, 0.5, 1.25]
    assert trace.kinds == ("http", "timer", "queue")


def test_by_application_adds_the_functions(trace_dir: Path) -> None:
    trace = read_trace(find_files(trace_dir), unit="application")
    assert trace.names == ("o/a", "o/b")
    assert trace.counts[0, 0] == 2 and trace.counts[0, 5] == 1
    assert trace.invocations == 9


def test_days_limit_keeps_the_first_days(trace_dir: Path) -> None:
    assert read_trace(find_files(trace_dir, days=1)).minutes == MIN


def test_truncated_file_names_the_line(tmp_path: Path) -> None:
    path = write_day(tmp_path, 1, [])
    good = inv_row("o", "a", "f", "http", {1: 1})
    path.write_text(path.read_text() + good + "\n" + good.replace("o,a,f", "o,a,g")[:300])
    with pytest.raises(TraceError) as info:
        read_trace(find_files(tmp_path))
    assert info.value.line == 3
    assert f"{path}, line 3:" in info.value.detail and "truncated?" in info.value.detail


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (["o,a,f,http," + ",".join(["0"] * 1439) + ",x"], 2, "minute 1440: 'x' is not a count"),
        (["o,a,f,http," + ",".join(["-1"] + ["0"] * 1439)], 2, "minute 1: '-1' is not a count"),
        (
            [inv_row("o", "a", "f", "http", {}), inv_row("o", "a", "f", "http", {})],
            3,
            "appears twice",
        ),
        (["o,a,f,http,1,2"], 2, "6 fields, not 1444"),
    ],
)
def test_malformed_rows_name_line_and_problem(
    tmp_path: Path, rows: list[str], line: int, message: str
) -> None:
    write_day(tmp_path, 1, [*rows, inv_row("o", "z", "z", "http", {})])
    with pytest.raises(TraceError) as info:
        read_trace(find_files(tmp_path))
    assert info.value.line == line and message in info.value.detail


def test_bad_header_empty_file_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "invocations_per_function_md.anon.d01.csv"
    path.write_text("HashOwner,HashApp,HashFunction,Trigger,1,2\n")
    with pytest.raises(TraceError, match="line 1: header is not"):
        read_trace(find_files(tmp_path))
    path.write_text("")
    with pytest.raises(TraceError, match="line 1: empty file"):
        read_trace(find_files(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceError, match="no invocations_per_function"):
        find_files(tmp_path / "empty")
    with pytest.raises(TraceError, match="not a folder"):
        find_files(tmp_path / "nowhere")


def test_bad_memory_value_names_its_line(trace_dir: Path) -> None:
    (trace_dir / "app_memory_percentiles.anon.d01.csv").write_text(
        "HashOwner,HashApp,SampleCount,AverageAllocatedMb\no,a,1,256\no,b,1,lots\n"
    )
    with pytest.raises(TraceError) as info:
        read_trace(find_files(trace_dir))
    assert info.value.line == 3 and "AverageAllocatedMb is 'lots'" in info.value.detail
