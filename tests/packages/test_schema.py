from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from nfaas.packages.descriptors import ApplicationDescriptor, FunctionDescriptor
from nfaas.packages.schema import SCHEMA_FILES, main, render_schemas, stale_schemas

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_are_current() -> None:
    stale = stale_schemas(ROOT / "docs" / "schema")
    assert stale == [], "run: python -m nfaas.packages.schema docs/schema"


def test_schemas_are_json_schema_2020_12() -> None:
    for name, text in render_schemas().items():
        schema = json.loads(text)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert name in SCHEMA_FILES.values()
    function = json.loads(render_schemas()["function.schema.json"])
    assert {"name", "version", "runtime", "handler", "code"} <= set(function["required"])


def test_main_writes_and_checks(tmp_path: Path) -> None:
    assert main([str(tmp_path), "--check"]) == 1
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SCHEMA_FILES.values())
    assert main([str(tmp_path), "--check"]) == 0


def _fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for sub in _models_in(field.annotation):
            names |= _fields(sub, seen)
    return names


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _models_in(arg)
    for meta in getattr(annotation, "__metadata__", ()):
        found += _models_in(meta)
    return found


def test_every_descriptor_field_is_documented() -> None:
    doc = (ROOT / "docs" / "package-format.md").read_text()
    seen: set[type[BaseModel]] = set()
    fields = _fields(ApplicationDescriptor, seen) | _fields(FunctionDescriptor, seen)
    assert len(fields) > 40
    missing = sorted(name for name in fields if f"`{name}`" not in doc)
    assert missing == []
