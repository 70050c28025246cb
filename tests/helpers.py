"""Building package source folders and packages in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nfaas.packages.builder import build_package


def function_doc(name: str, *, app: str = "demo", version: str = "1.0.0", runtime: tuple[str, str] = ("mock", "1"),
                 handler: str | None = None, triggers: list[dict[str, Any]] | None = None,
                 **extra: Any) -> dict[str, Any]:  # fmt: skip
    doc: dict[str, Any] = {
        "kind": "ServerlessFunction",
        "name": name,
        "version": version,
        "application": app,
        "runtime": {"name": runtime[0], "version": runtime[1]},
        "handler": handler or name,
        "code": {"path": f"Files/{name}"},
        "triggers": triggers or [],
    }
    doc.update(extra)
    return doc


def write_source(root: Path, app: str, functions: list[dict[str, Any]], *, version: str = "1.0.0",
                 code: dict[str, dict[str, str]] | None = None, application: bool = True) -> Path:  # fmt: skip
    """A source folder: Definitions/ with the descriptors, Files/<fn>/ with code."""
    (root / "Definitions").mkdir(parents=True, exist_ok=True)
    for fn in functions:
        (root / "Definitions" / f"{fn['name']}.yaml").write_text(yaml.safe_dump(fn))
        files = (code or {}).get(
            fn["name"], {"handler.py": "def handle(event, context):\n    return event.body\n"}
        )
        for rel, text in files.items():
            target = root / "Files" / fn["name"] / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if application:
        app_doc = {
            "kind": "ServerlessApplication",
            "name": app,
            "version": version,
            "provider": "tests",
            "functions": [
                {"name": f["name"], "descriptor": f"Definitions/{f['name']}.yaml"}
                for f in functions
            ],
        }
        (root / "Definitions" / "app.yaml").write_text(yaml.safe_dump(app_doc))
    return root


def package(root: Path, app: str, functions: list[dict[str, Any]], **kwargs: Any) -> bytes:
    return build_package(write_source(root, app, functions, **kwargs))
