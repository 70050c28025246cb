from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iot-telemetry"
WAT = Path("Files/classify/classify.wat")


@pytest.fixture
def example_source(tmp_path: Path) -> Path:
    """A copy of examples/iot-telemetry; a placeholder .wat stands in if it is not written yet."""
    source = tmp_path / "iot-telemetry"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__"))
    wat = source / WAT
    if not wat.exists():
        wat.parent.mkdir(parents=True, exist_ok=True)
        wat.write_text('(module (func (export "classify")))\n')
    return source
