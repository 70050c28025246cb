"""The published JSON Schemas of the descriptors, generated from the models.

``python -m nfaas.packages.schema docs/schema`` writes them; ``--check``
exits non-zero when the files on disk are stale. The models in
``descriptors.py`` stay the single source of the format (EVE025 Gaps #4.1, #4.2
ask for the descriptors to be specified; this is their specification).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nfaas.packages.descriptors import json_schemas

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILES = {
    "ServerlessApplication": "application.schema.json",
    "ServerlessFunction": "function.schema.json",
}


def render_schemas() -> dict[str, str]:
    """File name -> JSON text (sorted keys, two-space indent, final newline)."""
    rendered: dict[str, str] = {}
    for kind, schema in json_schemas().items():
        document = {"$schema": JSON_SCHEMA_DIALECT, **_as_dict(schema)}
        rendered[SCHEMA_FILES[kind]] = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(dest: Path) -> list[Path]:
    """Write both schema files into ``dest``; return their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in render_schemas().items():
        path = dest / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(dest: Path) -> list[Path]:
    """The schema files in ``dest`` that are missing or differ from the models."""
    stale: list[Path] = []
    for name, text in render_schemas().items():
        path = dest / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfaas.packages.schema", description=__doc__)
    parser.add_argument("dest", type=Path, help="folder for the schema files, e.g. docs/schema")
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schemas(args.dest)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.dest):
        print(path)
    return 0


def _as_dict(schema: object) -> dict[str, object]:
    if not isinstance(schema, dict):
        raise TypeError("a JSON Schema is an object")
    return {str(key): value for key, value in schema.items()}


if __name__ == "__main__":
    sys.exit(main())
