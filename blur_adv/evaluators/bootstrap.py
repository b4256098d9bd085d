"""95% percentile-bootstrap intervals of per-example statistics, for every headline number.

An evaluated number (accuracy, median minimal flip budget, ...) is a statistic of N evaluated
examples; its interval comes from resampling those examples with replacement `RESAMPLES` times
with a fixed seed, so re-running an evaluation reproduces its intervals exactly.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
# Suffix of an interval's keys next to the number they qualify: "<key>/ci95_lo", "<key>/ci95_hi"
# (two floats, so eval.json stays a flat dict of numbers that TensorBoard and the sweep's tables
# read like any other).
LOW, HIGH = "ci95_lo", "ci95_hi"


def interval(values, statistic: Callable[[np.ndarray], np.ndarray] = None, *,
             resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED
             ) -> tuple[float, float]:
  """Percentile-bootstrap interval of `statistic` over the examples (axis 0) of `values`.

  `statistic(samples)` maps `(resamples, N, ...)` resampled values to `(resamples,)` (default:
  the mean over axis 1). Infinite statistics (e.g. a median of never-flipped examples at inf)
  are kept: the bounds are then inf too.
  """
  values = np.asarray(values)
  if values.ndim == 0 or values.shape[0] == 0:
    raise ValueError(f"values must hold at least one example, got shape {values.shape}")
  if not 0 < level < 1:
    raise ValueError(f"level must lie in (0, 1), got {level!r}")
  statistic = statistic or (lambda samples: samples.mean(axis=1))
  rng = np.random.default_rng(seed)
  stats = []
  # Resample in blocks: (resamples, N) indices of 10^4 examples would take ~80 MB at once.
  block = max(1, 2 ** 22 // values.shape[0])
  for start in range(0, resamples, block):
    indices = rng.integers(0, values.shape[0], size=(min(block, resamples - start), values.shape[0]))
    stats.append(np.asarray(statistic(values[indices]), dtype=np.float64))
  stats = np.concatenate(stats)
  tail = (1 - level) / 2
  # An observed order statistic, not an interpolation: interpolating between two infinite
  # statistics gives nan.
  low, high = np.quantile(stats, [tail, 1 - tail], method="inverted_cdf")
  return float(low), float(high)


def with_interval(key: str, values, statistic=None) -> dict[str, float]:
  """`{"<key>/ci95_lo": lo, "<key>/ci95_hi": hi}` of `interval(values, statistic)`."""
  low, high = interval(values, statistic)
  return {f"{key}/{LOW}": low, f"{key}/{HIGH}": high}


def proportion_values(accuracy: float, count: int) -> np.ndarray:
  """A 0/1 vector with `count` entries and mean `accuracy`.

  The bootstrap distribution of a proportion's mean depends only on its count and number of
  ones (the resampled sum is Binomial(count, accuracy)), so this stands in for the per-example
  vector of an evaluator that keeps only totals (the data-parallel clean evaluator).
  """
  ones = int(round(accuracy * count))
  return np.concatenate([np.ones(ones), np.zeros(count - ones)])


def median_statistic(samples: np.ndarray) -> np.ndarray:
  """Median over axis 1 as `np.quantile(..., method="inverted_cdf")` (an observed value, as the
  minimal-flip evaluator reports it, inf included)."""
  return np.quantile(samples, 0.5, axis=1, method="inverted_cdf")
