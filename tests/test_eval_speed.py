"""The fast robustness path (moment-based bisection, chunks, one program for all families) gives
the results of the direct one (SSIM per bisection step, one batch, one program per family)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blur_adv.ops import attacks, budget, measures
from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels as kernels_lib

FAMILIES = ("gaussian", "motion", "free_form")
ATTACK = dict(size=5, steps=3, restarts=2, step_size=0.15)
# The direct path: what the evaluators ran before.
DIRECT = dict(batch_size=None, one_program=False, host_loop=False, ssim_fn=budget.direct_ssim)


def _smooth_images(count, seed=0):
  """Random images smoothed a little, so SSIM budgets bite like on natural images."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.random((count, 16, 16, 3), dtype=np.float32))
  return blur_lib.blur(x, kernels_lib.gaussian(3, 0.7))


@functools.lru_cache(maxsize=None)
def _model():
  """A fixed random MLP and 10 images labelled by it (clean accuracy 1)."""
  rng = np.random.default_rng(1)
  w1 = jnp.asarray(rng.normal(0, 0.05, (16 * 16 * 3, 32)), jnp.float32)
  w2 = jnp.asarray(rng.normal(0, 0.3, (32, 5)), jnp.float32)
  logits_fn = lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2
  images = np.asarray(_smooth_images(10))
  return logits_fn, images, np.asarray(jnp.argmax(logits_fn(images), -1))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_ssim_along_blend_matches_ssim(alpha):
  x = _smooth_images(6)
  d = blur_lib.blur(x, kernels_lib.motion(5, 3.0, 0.4)) - x
  alphas = jnp.full((6,), alpha)
  direct = measures.ssim(x, x + alphas[:, None, None, None] * d)
  np.testing.assert_allclose(measures.ssim_along_blend(x, d)(alphas), direct, atol=2e-6)


def test_moment_bisection_matches_direct_and_never_violates():
  x = _smooth_images(16, seed=2)
  blurred = blur_lib.blur(x, kernels_lib.gaussian(5, jnp.linspace(0.3, 1.5, 16)))
  for b in (0.01, 0.05, 0.2):
    fast = budget.admissible_alpha(x, blurred, b)
    direct = budget.admissible_alpha(x, blurred, b, ssim_fn=budget.direct_ssim)
    # At most a tie at the last bisection step (float rounding of an SSIM at the threshold).
    assert np.max(np.abs(fast - direct)) <= 2.0 ** -budget.DEFAULT_BISECTION_STEPS
    a = fast[:, None, None, None]
    assert np.all(measures.ssim(x, a * blurred + (1 - a) * x) >= 1 - b)  # zero violations


def test_chunked_one_program_attack_matches_direct():
  logits_fn, images, labels = _model()
  key = jax.random.PRNGKey(3)
  # 10 examples in chunks of 4: the last chunk is padded.
  fast = attacks.attack_families(logits_fn, images, labels, 0.1, key, families=FAMILIES,
                                 batch_size=4, **ATTACK)
  direct = attacks.attack_families(logits_fn, images, labels, 0.1, key, families=FAMILIES,
                                   **DIRECT, **ATTACK)
  flipped = 0
  for family in FAMILIES:
    np.testing.assert_array_equal(fast[family].success, direct[family].success)
    np.testing.assert_allclose(fast[family].loss, direct[family].loss, atol=1e-4)
    np.testing.assert_allclose(fast[family].kernels, direct[family].kernels, atol=1e-4)
    assert np.all(fast[family].ssim >= 1 - 0.1)
    flipped += fast[family].success.sum()
  assert 0 < flipped < len(labels) * len(FAMILIES)  # the comparison is not vacuous
  # And `attack` itself (one family, whole batch) is the same search.
  single = attacks.attack(logits_fn, images, labels, 0.1, jax.random.fold_in(key, 1),
                          family="motion", **ATTACK)
  np.testing.assert_array_equal(single.success, fast["motion"].success)


def test_chunked_minimal_flip_matches_direct():
  logits_fn, images, labels = _model()
  key = jax.random.PRNGKey(4)
  kwargs = dict(families=FAMILIES[:2], search_steps=3, **ATTACK)
  fast = attacks.minimal_flip_families(logits_fn, images, labels, key, batch_size=4, **kwargs)
  direct = attacks.minimal_flip_families(logits_fn, images, labels, key, **DIRECT, **kwargs)
  for family in kwargs["families"]:
    np.testing.assert_allclose(fast[family].budget, direct[family].budget, rtol=1e-5)
    np.testing.assert_array_equal(fast[family].flipped, direct[family].flipped)


def test_worst_case_accuracy_same_on_both_paths():
  logits_fn, images, labels = _model()
  key = jax.random.PRNGKey(5)
  fast = attacks.worst_case_accuracy(logits_fn, images, labels, 0.05, key, families=FAMILIES,
                                     batch_size=3, **ATTACK)
  direct = attacks.worst_case_accuracy(logits_fn, images, labels, 0.05, key, families=FAMILIES,
                                       **DIRECT, **ATTACK)
  assert fast == direct


# 10 examples in chunks of 4, or in one chunk whose subsets are padded to multiples of 2.
@pytest.mark.parametrize("batch_size", [4, None])
def test_worst_case_attacks_only_examples_still_standing_with_the_same_answers(batch_size):
  """Skipping examples misclassified clean, and restarts on examples already flipped, changes no
  answer: the flags equal the full attack's success flags (subsets padded to few shapes)."""
  logits_fn, images, labels = _model()
  labels = labels.copy()
  labels[:2] = (labels[:2] + 1) % 5  # Two examples misclassified clean.
  key = jax.random.PRNGKey(7)
  full = attacks.attack_families(logits_fn, images, labels, 0.08, key, families=FAMILIES,
                                 batch_size=4, **ATTACK)
  clean = np.asarray(jnp.argmax(logits_fn(images), -1)) == labels
  correct = attacks.worst_case_correct(logits_fn, images, labels, 0.08, key, families=FAMILIES,
                                       batch_size=batch_size, **ATTACK)
  np.testing.assert_array_equal(correct["clean"], clean)
  for family in FAMILIES:
    np.testing.assert_array_equal(correct[family], clean & ~full[family].success, err_msg=family)
  flipped = np.mean([clean & full[f].success for f in FAMILIES])
  assert 0 < flipped < np.mean(clean)  # Some, not all, flipped: the skipping was exercised.


def test_host_driven_attack_traces_its_step_once(monkeypatch):
  """Every step and restart of `_attack_on_host` reuses one compiled step (a weak-typed first
  carry used to trace and compile it twice)."""
  logits_fn, images, labels = _model()
  starts = np.asarray(attacks.random_starts(jax.random.PRNGKey(3), "motion", 4, ATTACK["size"],
                                            restarts=2))
  statics = dict(attacks.DEFAULTS, families=("motion",), size=ATTACK["size"], steps=3)
  del statics["step_size"]
  traces = []

  def traced_step(*args, **kwargs):
    traces.append(1)  # Runs once per trace, not per call.
    return attacks._ascend(*args, **kwargs)
  monkeypatch.setattr(attacks, "_ascend_jit",
                      jax.jit(traced_step, static_argnames=attacks._STEP_STATIC))
  attacks._attack_on_host(logits_fn, images[:4], labels[:4], np.full(4, 0.08, np.float32),
                          starts, 0, ATTACK["step_size"], **statics)
  assert len(traces) == 1
