"""Worst-case blur under an SSIM budget: per-example attacks over a kernel family's parameters.

Everything here is a pure function of `logits_fn(images) -> logits` and arrays, so it can run
inside a jitted / pmapped / shard_mapped train step on each device. `logits_fn` is a static
argument of the jitted entry points: pass the same function object to reuse compilations.

Each family is searched through unconstrained variables `raw` mapped onto bounded parameter
ranges sized to the kernel window (so the kernel never outgrows it and sign steps have a fixed
scale). After every step the kernel is made admissible (`budget.admissible_alpha`, blending with
the identity), so every iterate, and the result, satisfies `SSIM >= 1 - budget`.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import budget as budget_lib
from blur_adv.ops import families as families_lib
from blur_adv.ops import family_params
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import measures

# Step rules of the search (`attack(optimizer=...)`), not the training optimizers of optim.py.
STEP_RULES = ("sign", "adam")
LOSSES = ("ce", "margin")


# ----------------------------------------------------------------------------- losses


def _margin(logits, labels):
  """logit of `labels` minus the largest other logit."""
  chosen = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  return chosen - jnp.max(others, axis=-1)


def attack_loss(logits, labels, targeted=False, loss="ce"):
  """Per-example loss the attacker maximizes, and whether the attack succeeded, both `(B,)`.

  Untargeted: raise cross-entropy (or the best wrong class's margin) of the true `labels`;
  targeted: `labels` are the targets, lower their cross-entropy (raise their margin).
  """
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
  predicted = jnp.argmax(logits, axis=-1)
  if loss == "ce":
    value = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  else:
    value = -_margin(logits, labels)
  if targeted:
    return -value, predicted == labels
  return value, predicted != labels


# ----------------------------------------------------------------------------- attack


class AttackResult(NamedTuple):
  kernels: jax.Array  # (B, k, k) admissible kernels (the identity blend of a family kernel)
  images: jax.Array  # (B, H, W, C) the attacked images, blurred by `kernels`
  loss: jax.Array  # (B,) attacker's loss at the result
  success: jax.Array  # (B,) bool: misclassified (untargeted) / classified as target (targeted)
  ssim: jax.Array  # (B,) SSIM of the result to the clean image (>= 1 - budget)


def _better(loss, success, best_loss, best_success):
  """A success beats a failure; otherwise the higher loss wins."""
  return (success & ~best_success) | ((success == best_success) & (loss > best_loss))


def _select(mask, new, old):
  return jax.tree.map(
      lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b), new, old)


_STATIC = ("logits_fn", "family", "size", "steps", "restarts", "optimizer", "loss", "targeted",
           "padding", "bisection_steps", "ssim_fn")


def _check_count(name, value, minimum):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def attack(logits_fn, images, labels, budget, key, *, family, size=7, steps=10, restarts=1,
           step_size=0.1, optimizer="sign", loss="ce", targeted=False, padding="reflect",
           bisection_steps=budget_lib.DEFAULT_BISECTION_STEPS, ssim_fn=measures.ssim):
  """Per-example worst-case admissible kernel of `family`.

  Args:
    logits_fn: `images -> logits`, e.g. `lambda x: model.apply(params, x)`.
    images: `(B, H, W, C)` in [0, 1]. labels: `(B,)` ints (targets when `targeted`).
    budget: scalar or `(B,)` in (0, 1]; results satisfy SSIM >= 1 - budget.
    key: PRNG key for the random starts.
    family: a name in `families.FAMILIES`. size: odd kernel size.
    steps: ascent steps per restart (0 evaluates the random start only).
    restarts: random starts; the best result per example is kept.
    step_size: sign-step size / Adam learning rate, in raw units (traced, not static).
    optimizer: "sign" (signed gradient ascent) or "adam".
    loss: "ce" or "margin"; targeted: see `attack_loss`.
    padding, bisection_steps, ssim_fn: as in `budget.make_admissible`.

  The best iterate over all steps and restarts is returned (a success beats a higher loss).
  """
  family_params.check_family(family)
  family_params.check_size(size)
  _check_count("steps", steps, 0)
  _check_count("restarts", restarts, 1)
  _check_count("bisection_steps", bisection_steps, 0)
  if optimizer not in STEP_RULES:
    raise ValueError(f"optimizer must be one of {STEP_RULES}, got {optimizer!r}")
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must have shape (B, H, W, C), got {images.shape}")
  labels = jnp.asarray(labels)
  if labels.shape != images.shape[:1]:
    raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
  budget = budget_lib.check_budget(budget, images.shape[0])  # validates concrete values
  return _attack(logits_fn, images, labels, budget, key, family=family, size=size, steps=steps,
                 restarts=restarts, step_size=step_size, optimizer=optimizer, loss=loss,
                 targeted=targeted, padding=padding, bisection_steps=bisection_steps,
                 ssim_fn=ssim_fn)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _attack(logits_fn, images, labels, budget, key, *, family, size, steps, restarts, step_size,
            optimizer, loss, targeted, padding, bisection_steps, ssim_fn):
  batch = images.shape[0]
  clean = jax.lax.stop_gradient(images)
  transform = (optax.sign_sgd if optimizer == "sign" else optax.adam)(step_size)

  def objective(raw):
    kernels = family_params.raw_to_kernels(family, raw, size)
    blurred = blur_lib.blur(clean, kernels, padding=padding)
    alpha = budget_lib.admissible_alpha(clean, blurred, budget, bisection_steps, ssim_fn)
    a = alpha[:, None, None, None]  # already a constant (no gradient through alpha)
    attacked = a * blurred + (1.0 - a) * clean
    value, success = attack_loss(logits_fn(attacked), labels, targeted, loss)
    return jnp.sum(value), (value, success, budget_lib.blend(kernels, alpha), attacked)

  grad_fn = jax.value_and_grad(objective, has_aux=True)

  def ascend(_, carry):
    raw, opt_state, best = carry
    (_, (value, success, kernels, attacked)), grad = grad_fn(raw)
    improved = _better(value, success, best[0], best[1])
    best = _select(improved, (value, success, kernels, attacked), best)
    # Ascent: the optimizers descend, so feed them the negated gradient.
    updates, opt_state = transform.update(-grad, opt_state, raw)
    return optax.apply_updates(raw, updates), opt_state, best

  def restart(r, best):
    raw = family_params.random_raw(jax.random.fold_in(key, r), family, batch, size)
    # steps + 1 evaluations: the last update is never evaluated, which costs one backward pass
    # but keeps a single traced step body.
    _, _, best = jax.lax.fori_loop(0, steps + 1, ascend, (raw, transform.init(raw), best))
    return best

  identity = jnp.broadcast_to(kernels_lib.identity(size), (batch, size, size))
  best = (jnp.full((batch,), -jnp.inf), jnp.zeros((batch,), bool), identity, clean)
  value, success, kernels, attacked = jax.lax.fori_loop(0, restarts, restart, best)
  return AttackResult(kernels, attacked, value, success, ssim_fn(clean, attacked))


# ----------------------------------------------------------------------------- minimal blur to flip


class FlipResult(NamedTuple):
  budget: jax.Array  # (B,) smallest budget found that flips; 0 if misclassified clean; inf: never
  flipped: jax.Array  # (B,) bool: flipped at some budget <= 1 (or misclassified clean)
  ssim: jax.Array  # (B,) SSIM of the flipping image (1 if misclassified clean, nan if never)
  kernels: jax.Array  # (B, k, k) the flipping admissible kernel (identity when none)


def minimal_flip_budget(logits_fn, images, labels, key, *, family, size=7, steps=10, restarts=1,
                        step_size=0.1, optimizer="sign", loss="ce", targeted=False,
                        padding="reflect", bisection_steps=budget_lib.DEFAULT_BISECTION_STEPS,
                        ssim_fn=measures.ssim, search_steps=8, min_budget=1e-3):
  """Per example, the smallest SSIM budget at which the attack flips the prediction.

  Bisection on log(budget) in [min_budget, 1] with the attack (same `key`) at every probe:
  the result's budget flips the prediction and the bracket's lower end did not (or is
  `min_budget`, never probed), so the highest flipping SSIM is about 1 - budget. Examples the
  attack cannot flip at budget 1 get inf.
  Other arguments as in `attack`; `targeted` flips to `labels` as targets.
  """
  _check_count("search_steps", search_steps, 0)
  if not isinstance(min_budget, jax.core.Tracer) and not 0 < float(min_budget) < 1:
    raise ValueError(f"min_budget must lie in (0, 1), got {min_budget!r}")
  # `attack` validates the remaining arguments when it is traced inside.
  images = jnp.asarray(images)
  attack_args = dict(family=family, size=size, steps=steps, restarts=restarts,
                     step_size=step_size, optimizer=optimizer, loss=loss, targeted=targeted,
                     padding=padding, bisection_steps=bisection_steps, ssim_fn=ssim_fn)
  return _minimal_flip_budget(logits_fn, images, jnp.asarray(labels), key, min_budget,
                              search_steps=search_steps, **attack_args)


@functools.partial(jax.jit, static_argnames=_STATIC + ("search_steps",))
def _minimal_flip_budget(logits_fn, images, labels, key, min_budget, *, search_steps, family,
                         size, steps, restarts, step_size, optimizer, loss, targeted, padding,
                         bisection_steps, ssim_fn):
  batch = images.shape[0]
  run = functools.partial(
      attack, logits_fn, images, labels, key=key, family=family, size=size, steps=steps,
      restarts=restarts, step_size=step_size, optimizer=optimizer, loss=loss, targeted=targeted,
      padding=padding, bisection_steps=bisection_steps, ssim_fn=ssim_fn)
  _, clean_success = attack_loss(logits_fn(images), labels, targeted, "ce")

  def probe(i, carry):
    low, high, ever, found_ssim, found_kernels = carry
    # The first probe is budget 1 (can it flip at all?); then the geometric midpoint, i.e.
    # bisection on log(budget). One traced attack serves every probe.
    middle = jnp.where(i == 0, 1.0, jnp.sqrt(low * high))
    result = run(middle)
    flip = result.success
    return (jnp.where(flip, low, middle), jnp.where(flip, middle, high), ever | flip,
            jnp.where(flip, result.ssim, found_ssim),
            jnp.where(flip[:, None, None], result.kernels, found_kernels))

  identity = jnp.broadcast_to(kernels_lib.identity(size), (batch, size, size))
  start = (jnp.full((batch,), min_budget, jnp.float32), jnp.ones((batch,)),
           jnp.zeros((batch,), bool), jnp.full((batch,), jnp.nan), identity)
  _, high, ever, found_ssim, found_kernels = jax.lax.fori_loop(
      0, search_steps + 1, probe, start)
  flipped = clean_success | ever
  budget = jnp.where(clean_success, 0.0, jnp.where(ever, high, jnp.inf))
  ssim = jnp.where(clean_success, 1.0, found_ssim)
  kernels = jnp.where(clean_success[:, None, None], identity, found_kernels)
  return FlipResult(budget, flipped, ssim, kernels)


# ----------------------------------------------------------------------------- summaries


def worst_case_accuracy(logits_fn, images, labels, budget, key, *, families=families_lib.FAMILIES,
                        **attack_kwargs):
  """Accuracy under the per-example worst admissible blur of each family, and over all of them.

  An example counts as correct when it is classified correctly clean and the family's attack
  does not flip it. Returns `{"clean": ..., family: ..., "all": ...}`; "all" counts an example
  correct only if no family's attack flipped it. `attack_kwargs` go to `attack` (untargeted).
  """
  if not families:
    raise ValueError("families must not be empty")
  if attack_kwargs.get("targeted"):
    raise ValueError("worst_case_accuracy is untargeted; targeted must be False")
  clean = jnp.argmax(logits_fn(jnp.asarray(images)), axis=-1) == jnp.asarray(labels)
  correct = {}
  for index, family in enumerate(families):
    result = attack(logits_fn, images, labels, budget, jax.random.fold_in(key, index),
                    family=family, **attack_kwargs)
    correct[family] = clean & ~result.success
  accuracy = {"clean": float(jnp.mean(clean))}
  accuracy.update({family: float(jnp.mean(c)) for family, c in correct.items()})
  accuracy["all"] = float(jnp.mean(functools.reduce(jnp.logical_and, correct.values())))
  return accuracy


def accuracy_vs_budget(flip_budgets, budgets):
  """Accuracy at each budget implied by minimal flip budgets, and the curve's normalized area.

  An example counts as correct at budget b when its minimal flip budget exceeds b (misclassified
  clean examples have budget 0, never-flipped ones inf). This assumes flipping is monotone in
  the budget, which holds for the exact worst case and approximately for the attack. For
  several families pass the per-example minimum over families. The area is the trapezoid
  integral over `budgets` divided by their span, so it lies in [0, 1].
  """
  flips = np.asarray(flip_budgets, dtype=np.float64).reshape(-1)
  budgets = np.asarray(budgets, dtype=np.float64).reshape(-1)
  if flips.size == 0 or np.isnan(flips).any():
    raise ValueError("flip_budgets must be a non-empty array without NaN")
  if budgets.size < 2 or (np.diff(budgets) <= 0).any() or budgets[0] < 0:
    raise ValueError(f"budgets must be >= 2 increasing non-negative values, got {budgets}")
  accuracies = (flips[None, :] > budgets[:, None]).mean(axis=1)
  widths = np.diff(budgets)
  area = float(np.sum(widths * (accuracies[1:] + accuracies[:-1]) / 2) / (budgets[-1] - budgets[0]))
  return accuracies, area
