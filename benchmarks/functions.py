"""The functions the benchmarks run: a Python echo and a WebAssembly echo, as a package source.

Both answer the event's body unchanged, so that what is measured is the platform,
not the function. The package is written as a source folder (``Definitions/``
and ``Files/``) that ``nfaas up --onboard`` or ``build_package`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

APP = "bench"

PYTHON_ECHO = "def handle(event, context):\n    return event.body\n"

#: the nfaas Wasm ABI (docs/wasm-abi.md): events are written at 1024; the result is
#: the same span, (ptr << 32) | len. No imports, so a bare Instance can take it too.
WAT_ECHO = """\
(module
  (memory (export "memory") 1)
  (global $base i32 (i32.const 1024))
  (func (export "nfaas_alloc") (param $len i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (global.get $base) (local.get $len)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                         (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (global.get $base))
  (func (export "echo") (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
"""


@dataclass(frozen=True, slots=True)
class BenchFunction:
    """One function of the benchmark package."""

    name: str
    backend: str  # "process" or "wasm"
    #: how many of its instances may come from the runtime pool (0: always the full path)
    max_quick_start: int = 1
    udp_port: int | None = None
    instance_threshold: int = 4
    queue_size: int = 1024

    def descriptor(self) -> dict[str, Any]:
        python = self.backend == "process"
        triggers: list[dict[str, Any]] = [{"type": "http", "methods": ["GET", "POST"]}]
        if self.udp_port is not None:
            triggers.append({"type": "udp", "port": self.udp_port})
        return {
            "descriptor_version": "1.0",
            "kind": "ServerlessFunction",
            "name": self.name,
            "version": "1.0.0",
            "application": APP,
            "runtime": {"name": "python", "version": "3.11"}
            if python
            else {"name": "wasm", "version": "1"},
            "handler": "handler:handle" if python else "echo",
            "code": {"path": f"Files/{self.name}" if python else f"Files/{self.name}/echo.wat"},
            # A small CPU reservation, so that scale-out is bounded by the threshold
            # and not by the node's two cores.
            # Wasm: a budget small enough for the platform to run the echo on its event
            # loop's thread (docs/wasm-abi.md, "Where a function runs").
            "resources": {"memory_mb": 64 if python else 4, "cpu": 0.1, "timeout_s": 5},
            "scaling": {
                "instance_threshold": self.instance_threshold,
                "concurrency": 1,
                "idle_period_s": 600,
                "max_quick_start": self.max_quick_start,
                "queue_size": self.queue_size,
                "queue_timeout_s": 10,
            },
            "triggers": triggers,
            **({} if python else {"wasm": {"fuel": 20_000}}),
        }

    def files(self) -> dict[str, str]:
        if self.backend == "process":
            return {"handler.py": PYTHON_ECHO}
        return {"echo.wat": WAT_ECHO}


def write_package_source(root: Path, functions: list[BenchFunction]) -> Path:
    """The source folder of application ``bench`` holding ``functions``."""
    definitions = root / "Definitions"
    definitions.mkdir(parents=True, exist_ok=True)
    for fn in functions:
        (definitions / f"{fn.name}.yaml").write_text(yaml.safe_dump(fn.descriptor()))
        for rel, text in fn.files().items():
            target = root / "Files" / fn.name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    application = {
        "descriptor_version": "1.0",
        "kind": "ServerlessApplication",
        "name": APP,
        "version": "1.0.0",
        "provider": "nfaas benchmarks",
        "runtimes": [{"name": "python", "version": "3.11"}, {"name": "wasm", "version": "1"}],
        "functions": [
            {"name": fn.name, "descriptor": f"Definitions/{fn.name}.yaml"} for fn in functions
        ],
    }
    (definitions / f"{APP}.yaml").write_text(yaml.safe_dump(application))
    return root
