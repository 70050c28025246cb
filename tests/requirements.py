"""What the suite needs from the machine: missing means failing, never skipping.

``scripts/setup`` installs every system package the tests use, so a missing one
is a broken setup, and the suite says which instead of passing quietly.
"""

from __future__ import annotations

import pytest


def require(available: tuple[bool, str], what: str) -> None:
    ok, why = available
    if not ok:
        pytest.fail(
            f"{what} cannot run on this machine: {why} (scripts/setup installs it)", pytrace=False
        )
