from __future__ import annotations

import numpy as np

from tests.api.conftest import api  # noqa: F401  (the platform-with-API fixture)


def counts_at(minutes: list[int], length: int | None = None) -> np.ndarray:
    """A per-minute count series with one invocation at each of ``minutes``."""
    out = np.zeros(length or (max(minutes) + 1), dtype=np.int64)
    np.add.at(out, minutes, 1)
    return out
