"""The iot-telemetry example: its functions, called as the python sandbox calls them."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.packages.conftest import EXAMPLE


@dataclass
class FakeEvent:
    body: bytes = b""
    trigger: str = "http"
    meta: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode()


@dataclass
class FakeContext:
    function: str = "ingest"
    version: str = "1.0.0"
    app: str = "iot-telemetry"
    instance_id: str = "i-1"

    def remaining_time(self) -> float:
        return 1.0


def _load(relative: str) -> ModuleType:
    path = EXAMPLE / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # no __pycache__ in the example folder: it is a package source
    written, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = written
    return module


@pytest.fixture
def ingest() -> ModuleType:
    return _load("Files/ingest/ingest.py")


@pytest.fixture
def summary() -> ModuleType:
    return _load("Files/summary/summary.py")


def test_ingest_json_reading(ingest: ModuleType) -> None:
    body = json.dumps({"device": "t-1", "value": 21.5, "unit": "C"}).encode()
    ack = ingest.handle(FakeEvent(body), FakeContext())
    assert ack["ok"] is True
    assert ack["reading"] == {"device": "t-1", "value": 21.5, "unit": "C"}
    assert (ack["function"], ack["instance"], ack["via"]) == ("ingest", "i-1", "http")
    json.dumps(ack)


def test_ingest_key_value_reading_over_udp(ingest: ModuleType) -> None:
    event = FakeEvent(
        b"device=pump-7 value=3 unit=bar\n", trigger="udp", meta={"peer": "10.0.0.2:5000"}
    )
    ack = ingest.handle(event, FakeContext())
    assert ack["ok"] is True
    assert ack["reading"] == {"device": "pump-7", "value": 3.0, "unit": "bar"}
    assert ack["via"] == "udp"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "empty reading"),
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "is an object"),
        (b'{"value": 1}', "'device'"),
        (b'{"device": "bad id!", "value": 1}', "'device'"),
        (b'{"device": "d", "value": "hot"}', "'value' must be a number"),
        (b'{"device": "d", "value": true}', "'value' must be a number"),
        (b"device=d value=nan", "finite"),
        (b"device=d value", "expected key=value"),
        (b'{"device": "d", "value": 1, "unit": "<script>"}', "'unit'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_ingest_refuses_invalid_readings(ingest: ModuleType, body: bytes, error: str) -> None:
    ack = ingest.handle(FakeEvent(body), FakeContext())
    assert ack["ok"] is False
    assert error in ack["error"]


def test_ingest_refuses_oversized_readings(ingest: ModuleType) -> None:
    ack = ingest.handle(FakeEvent(b"x" * 5000), FakeContext())
    assert ack == {"ok": False, "error": "reading is 5000 bytes, over 4096"}


def test_summary_counts_ticks_of_this_instance(summary: ModuleType) -> None:
    context = FakeContext(function="summary", instance_id="i-9")
    assert summary.handle(FakeEvent(trigger="timer"), context) is None
    assert summary.handle(FakeEvent(trigger="timer"), context) is None
    status = summary.handle(FakeEvent(trigger="http", meta={"method": "GET"}), context)
    assert status["ticks"] == 2
    assert status["invocations"] == 3
    assert status["instance"] == "i-9"
    assert status["uptime_s"] >= 0
    json.dumps(status)


def test_example_descriptors_are_in_the_repository() -> None:
    names = sorted(p.name for p in (EXAMPLE / "Definitions").iterdir())
    assert names == ["classify.yaml", "ingest.yaml", "iot-telemetry.yaml", "summary.yaml"]
    assert isinstance(EXAMPLE, Path)


def test_package_format_doc_shows_the_example_descriptors_verbatim() -> None:
    doc = (EXAMPLE.parents[1] / "docs" / "package-format.md").read_text()
    for path in sorted((EXAMPLE / "Definitions").iterdir()):
        assert f"```yaml\n{path.read_text()}```" in doc, (
            f"{path.name} differs from docs/package-format.md"
        )
