"""Write the API's OpenAPI document: ``python -m nfaas.api.openapi docs/openapi.json``."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from nfaas.config import Config


def openapi_document() -> dict[str, Any]:
    from nfaas.api.app import create_app
    from nfaas.platform import Platform

    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Config(data_dir=Path(tmp), node_memory_mb=1024, node_cpu=1))
        try:
            return create_app(platform).openapi()
        finally:
            platform.store.close()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/openapi.json")
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
