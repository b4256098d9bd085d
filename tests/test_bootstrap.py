"""The evaluators' bootstrap intervals against independent references."""
import numpy as np
import pytest
from scipy import stats

from blur_adv.evaluators import bootstrap


def _wilson(successes, n, z=1.959964):
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return centre - half, centre + half


@pytest.mark.parametrize("accuracy,count", [(0.86, 1000), (0.3, 400), (0.97, 2000)])
def test_proportion_interval_matches_wilson(accuracy, count):
  low, high = bootstrap.interval(bootstrap.proportion_values(accuracy, count))
  ref_low, ref_high = _wilson(round(accuracy * count), count)
  # Monte-Carlo error of a 1000-resample percentile bound is ~0.1 standard errors.
  se = np.sqrt(accuracy * (1 - accuracy) / count)
  assert abs(low - ref_low) < 0.25 * se and abs(high - ref_high) < 0.25 * se
  assert low < accuracy < high


def test_mean_interval_matches_scipy_percentile_bootstrap():
  values = np.random.default_rng(1).gamma(2.0, size=500)
  low, high = bootstrap.interval(values)
  ref = stats.bootstrap((values,), np.mean, n_resamples=20000, method="percentile",
                        confidence_level=0.95, random_state=np.random.default_rng(2))
  se = values.std() / np.sqrt(len(values))
  assert abs(low - ref.confidence_interval.low) < 0.25 * se
  assert abs(high - ref.confidence_interval.high) < 0.25 * se


def test_median_interval_matches_scipy_and_keeps_inf():
  values = np.random.default_rng(3).exponential(size=300)
  low, high = bootstrap.interval(values, bootstrap.median_statistic)
  ref = stats.bootstrap((values,), lambda x, axis: np.quantile(x, 0.5, axis=axis,
                                                               method="inverted_cdf"),
                        n_resamples=5000, method="percentile", random_state=np.random.default_rng(4))
  assert low == pytest.approx(ref.confidence_interval.low, abs=0.05)
  assert high == pytest.approx(ref.confidence_interval.high, abs=0.05)
  never = np.full(300, np.inf)
  assert bootstrap.interval(never, bootstrap.median_statistic) == (np.inf, np.inf)


def test_fixed_seed_and_keys():
  values = np.random.default_rng(5).random(50) < 0.5
  assert bootstrap.interval(values) == bootstrap.interval(values)
  assert set(bootstrap.with_interval("0.1/all", values)) == {"0.1/all/ci95_lo",
                                                             "0.1/all/ci95_hi"}
  with pytest.raises(ValueError, match="at least one example"):
    bootstrap.interval(np.zeros(0))


def test_per_example_curve_areas_average_to_the_curve_area():
  from blur_adv.evaluators import robustness  # pylint: disable=g-import-not-at-top
  from blur_adv.ops import attacks  # pylint: disable=g-import-not-at-top
  flips = np.array([0.0, 0.004, 0.03, 0.2, 0.9, np.inf, np.inf, 0.05])
  _, area = attacks.accuracy_vs_budget(flips, robustness.CURVE_BUDGETS)
  per_example = robustness._example_areas(flips, robustness.CURVE_BUDGETS)  # pylint: disable=protected-access
  assert per_example.mean() == pytest.approx(area)
  assert per_example[0] == 0 and per_example[5] == 1
