"""Blur attacks on a small MLP trained here on sklearn's digits (16x16 grey images)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage
from sklearn.datasets import load_digits

from blur_adv.ops import attacks, blur, families, measures as metrics
from blur_adv.ops import budget as budget_lib
from blur_adv.ops import kernels as kernels_lib

BATCH = 32
SIZE = 5
BUDGET = 0.1
# One attack configuration shared by the tests, so jit caches are reused within a worker.
CONFIG = dict(size=SIZE, steps=8, restarts=1, step_size=0.15)


def _apply(params, images):
  hidden = jax.nn.relu(images.reshape(images.shape[0], -1) @ params["w1"] + params["b1"])
  return hidden @ params["w2"] + params["b2"]


@functools.lru_cache(maxsize=None)
def trained():
  """(params, test images, test labels): a 256-32-10 MLP, full-batch Adam on 1000 digits."""
  digits = load_digits()
  # Bilinear 2x upscaling (numpy / scipy: avoids compiling a resize for a one-off).
  images = scipy.ndimage.zoom(digits.images / 16.0, (1, 2, 2), order=1)[..., None]
  images = jnp.asarray(np.clip(images, 0.0, 1.0), jnp.float32)
  labels = jnp.asarray(digits.target)
  train_x, train_y = images[:1000], labels[:1000]
  rng = np.random.default_rng(0)
  params = {"w1": rng.normal(0, 0.06, (256, 32)), "b1": np.zeros(32),
            "w2": rng.normal(0, 0.15, (32, 10)), "b2": np.zeros(10)}
  params = {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}
  optimizer = optax.adam(1e-2)

  @jax.jit
  def train(params):
    def step(_, carry):
      params, state = carry
      grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
          _apply(p, train_x), train_y).mean())(params)
      updates, state = optimizer.update(grads, state)
      return optax.apply_updates(params, updates), state
    return jax.lax.fori_loop(0, 120, step, (params, optimizer.init(params)))[0]

  params = train(params)
  return params, images[1000:1000 + BATCH], labels[1000:1000 + BATCH]


@functools.lru_cache(maxsize=None)
def logits_fn():
  params = trained()[0]
  return lambda images: _apply(params, images)  # one object: attack compilations are reused


def test_model_is_trained():
  _, x, y = trained()
  assert float(jnp.mean(jnp.argmax(logits_fn()(x), -1) == y)) >= 0.8


@pytest.mark.parametrize("family", families.FAMILIES)
def test_attack_beats_random_admissible_kernels(family):
  _, x, y = trained()
  result = attacks.attack(logits_fn(), x, y, BUDGET, jax.random.PRNGKey(1), family=family,
                          **CONFIG)
  # step_size 0 evaluates random starts only (another key): random admissible kernels, same jit.
  config = dict(CONFIG, step_size=0.0)
  random = attacks.attack(logits_fn(), x, y, BUDGET, jax.random.PRNGKey(2), family=family,
                          **config)
  print(family, float(result.loss.mean()), float(random.loss.mean()))
  # The model is confident (small losses), so compare relatively: at least 10% more loss.
  assert float(result.loss.mean()) > 1.1 * float(random.loss.mean())
  assert float(jnp.mean(result.loss >= random.loss)) >= 0.75
  assert int(jnp.sum(result.success)) >= int(jnp.sum(random.success))
  # Every result is admissible, and its images are the blur by its kernels.
  assert bool(jnp.all(result.ssim >= 1 - BUDGET))
  np.testing.assert_allclose(blur.blur(x, result.kernels), result.images, atol=1e-5)
  assert bool(jnp.all(metrics.ssim(x, blur.blur(x, result.kernels)) >= 1 - BUDGET))
  loss, success = attacks.attack_loss(logits_fn()(result.images), y)
  np.testing.assert_allclose(loss, result.loss, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(success, result.success)


def test_targeted_adam_attack_inside_a_jitted_step_with_traced_parameters():
  params, x, y = trained()
  target = (y + 1) % 10

  @jax.jit
  def step(params, key, step_size):
    # A fresh closure over traced parameters, as in a train step under pmap / shard_map.
    model = lambda images: _apply(params, images)
    result = attacks.attack(model, x, target, 0.3, key, family="free_form", size=SIZE, steps=10,
                            optimizer="adam", targeted=True, step_size=step_size)
    return result.loss, result.success, result.ssim

  loss, success, ssim = step(params, jax.random.PRNGKey(3), 0.5)
  random_loss, random_success, _ = step(params, jax.random.PRNGKey(4), 0.0)
  assert float(loss.mean()) > float(random_loss.mean()) + 0.1
  assert int(success.sum()) > int(random_success.sum())
  assert bool(jnp.all(ssim >= 0.7))


def test_minimal_blur_to_flip_is_consistent_with_the_attack():
  _, x, y = trained()
  key = jax.random.PRNGKey(5)
  config = dict(CONFIG, family="free_form", step_size=0.3)  # same compilation as above
  flip = attacks.minimal_flip_budget(logits_fn(), x, y, key, search_steps=7, **config)
  clean_correct = np.asarray(jnp.argmax(logits_fn()(x), -1) == y)
  b, flipped = np.asarray(flip.budget), np.asarray(flip.flipped)
  np.testing.assert_array_equal(b[~clean_correct], 0.0)
  np.testing.assert_array_equal(np.isinf(b), ~flipped)
  assert np.isnan(np.asarray(flip.ssim)[~flipped]).all()
  searched = flipped & clean_correct
  assert 8 <= searched.sum() < len(b)  # most flip, some never do
  assert ((b[searched] > 0) & (b[searched] <= 1)).all()
  # The returned kernel flips the prediction within its budget ...
  blurred = blur.blur(x, flip.kernels)
  predicted = np.asarray(jnp.argmax(logits_fn()(blurred), -1))
  assert (predicted[searched] != np.asarray(y)[searched]).mean() >= 0.95
  assert (np.asarray(metrics.ssim(x, blurred))[searched] >= 1 - b[searched] - 1e-6).all()
  # ... the attack flips it again at that budget, and not at a clearly smaller one.
  at_budget = attacks.attack(logits_fn(), x, y, np.where(searched, b, 1.0), key, **config)
  assert np.asarray(at_budget.success)[searched].mean() >= 0.9
  smaller = attacks.attack(logits_fn(), x, y, np.where(searched, b / 3, 1.0), key, **config)
  assert np.asarray(smaller.success)[searched].mean() <= 0.1
  # The accuracy-vs-budget curve starts at the clean accuracy and never rises.
  grid = np.linspace(0, 1, 11)
  accuracies, area = attacks.accuracy_vs_budget(b, grid)
  assert accuracies[0] == pytest.approx(clean_correct.mean())
  assert (np.diff(accuracies) <= 0).all() and 0 <= area <= accuracies[0]


def test_worst_case_accuracy_per_family_and_over_all():
  _, x, y = trained()
  accuracy = attacks.worst_case_accuracy(logits_fn(), x, y, BUDGET, jax.random.PRNGKey(1),
                                         families=("gaussian", "free_form"), **CONFIG)
  assert set(accuracy) == {"clean", "gaussian", "free_form", "all"}
  assert accuracy["all"] <= min(accuracy["gaussian"], accuracy["free_form"])
  assert max(accuracy["gaussian"], accuracy["free_form"]) <= accuracy["clean"]
  assert accuracy["free_form"] < accuracy["clean"]


def test_accuracy_vs_budget_hand_computed():
  flips = [0.0, 0.05, 0.2, np.inf]
  accuracies, area = attacks.accuracy_vs_budget(flips, [0.0, 0.1, 0.3])
  # Correct at b when flip > b: b=0 -> 3/4, b=0.1 -> 2/4, b=0.3 -> 1/4.
  np.testing.assert_allclose(accuracies, [0.75, 0.5, 0.25])
  # Trapezoids: 0.1 * 0.625 + 0.2 * 0.375 = 0.1375, over the span 0.3.
  assert area == pytest.approx(0.1375 / 0.3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(family="zoom"), "family"),
    (dict(family="gaussian", size=4), "size"),
    (dict(family="gaussian", optimizer="sgd"), "optimizer"),
    (dict(family="gaussian", loss="hinge"), "loss"),
    (dict(family="gaussian", restarts=0), "restarts"),
    (dict(family="gaussian", budget=0.0), "budget"),
    (dict(family="gaussian", labels=jnp.zeros(3, int)), "labels"),
])
def test_bad_input_raises(kwargs, match):
  x = jnp.zeros((4, 16, 16, 1))
  kwargs = dict(dict(labels=jnp.zeros(4, int), budget=0.1), **kwargs)
  with pytest.raises(ValueError, match=match):
    attacks.attack(lambda images: images.reshape(4, -1)[:, :10], x, kwargs.pop("labels"),
                   kwargs.pop("budget"), jax.random.PRNGKey(0), **kwargs)


def test_bad_curve_input_raises():
  with pytest.raises(ValueError, match="budgets"):
    attacks.accuracy_vs_budget([0.1], [0.5, 0.2])
  with pytest.raises(ValueError, match="flip_budgets"):
    attacks.accuracy_vs_budget([np.nan], [0.0, 0.5])


def test_each_family_steps_by_its_step_scale():
  """One sign step from the same start moves free-form logits 10x as far as a path's points."""
  _, x, y = trained()
  families_ = ("free_form", "motion_path")
  width = attacks._raw_width(families_, SIZE)
  start = jax.random.normal(jax.random.PRNGKey(7), (BATCH, width))
  moved = {}
  for index, family in enumerate(families_):
    carry = (start, attacks._transform("sign", 0.1).init(start), attacks._initial_best(x, SIZE))
    raw = attacks._ascend_jit(attacks.as_pytree(logits_fn()), x, y, jnp.full((BATCH,), BUDGET),
                              index, 0.1, carry, families=families_, size=SIZE, optimizer="sign",
                              loss="ce", targeted=False, padding="reflect", bisection_steps=12,
                              ssim_fn=metrics.ssim)[0]
    moved[family] = np.abs(np.asarray(raw - start))
  for family, step in (("free_form", 1.0), ("motion_path", 0.1)):
    stepped = np.isclose(moved[family], step, atol=1e-5)
    assert np.all(stepped | (moved[family] < 1e-6)) and stepped.any()


def test_refinement_raises_the_loss_and_passes_gradients_straight_through():
  _, x, y = trained()
  proposed = kernels_lib.gaussian(SIZE, jnp.full((BATCH,), 0.8))
  refine = functools.partial(attacks.refine, logits_fn(), x, y, BUDGET)

  def attack_loss(kernels):
    blurred = blur.blur(x, budget_lib.make_admissible(x, kernels, BUDGET))
    assert bool(jnp.all(metrics.ssim(x, blurred) >= 1 - BUDGET))
    return float(jnp.mean(attacks.attack_loss(logits_fn()(blurred), y)[0]))

  # No step: the proposal with a 5% uniform floor (softmax of its log), a kernel.
  floored = 0.95 * proposed + 0.05 / SIZE**2
  np.testing.assert_allclose(refine(proposed, steps=0), floored, rtol=1e-5, atol=1e-7)
  refined = refine(proposed, steps=2)
  np.testing.assert_allclose(jnp.sum(refined, axis=(1, 2)), 1.0, atol=1e-5)
  assert bool(jnp.all(refined >= 0))
  assert attack_loss(refined) > 1.5 * attack_loss(floored)
  # The gradient with respect to the proposal is the softmax's at the refined logits.
  weights = jax.random.normal(jax.random.PRNGKey(8), proposed.shape)
  shift = jax.lax.stop_gradient(jnp.log(refined) - jnp.log(floored))
  got = jax.grad(lambda k: jnp.sum(refine(k, steps=2) * weights))(proposed)
  want = jax.grad(lambda k: jnp.sum(
      kernels_lib.free_form(jnp.log(0.95 * k + 0.05 / SIZE**2) + shift) * weights))(proposed)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert float(jnp.max(jnp.abs(got))) > 0


def test_refinement_with_best_iterate_keeps_each_examples_highest_loss_iterate():
  _, x, y = trained()
  proposed = kernels_lib.gaussian(SIZE, jnp.full((BATCH,), 0.8))
  # A large step, so that sign ascent overshoots and the last iterate is not always the best.
  refine = functools.partial(attacks.refine, logits_fn(), x, y, BUDGET, proposed, step_size=0.6)

  def losses(kernels):
    blurred = blur.blur(x, budget_lib.make_admissible(x, kernels, BUDGET))
    return np.asarray(attacks.attack_loss(logits_fn()(blurred), y)[0])

  steps = 3  # The search is deterministic: iterate s is the last iterate of `steps=s`.
  iterates = [refine(steps=s) for s in range(steps + 1)]
  per_iterate = np.stack([losses(k) for k in iterates])
  best = refine(steps=steps, best_iterate=True)
  np.testing.assert_allclose(losses(best), per_iterate.max(axis=0), rtol=1e-5, atol=1e-6)
  chosen = np.stack(iterates)[per_iterate.argmax(axis=0), np.arange(BATCH)]
  np.testing.assert_allclose(best, chosen, rtol=1e-5, atol=1e-7)
  assert (per_iterate.argmax(axis=0) < steps).any()  # Some example's best is an earlier iterate.
