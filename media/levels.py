"""Signal level of a block of PCM, the one measure the turn and echo code compare."""

from __future__ import annotations

import numpy as np


def mean_power(samples: np.ndarray) -> float:
    """Mean square of `samples` (int16 or float) in float64; 0.0 for no samples."""
    return float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
