"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--only NAME] [--out FILE]``.

Each benchmark measures its figures beside their floors in the same run, prints
a table with values, floors, ratios and goals, and the whole run is written as
JSON. ``--write-docs`` renders ``docs/benchmarks.md`` from the results (of this
run, or of a saved one with ``--from``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
