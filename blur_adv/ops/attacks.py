"""Worst-case blur under an SSIM budget: per-example attacks over a kernel family's parameters.

Everything here is a pure function of `logits_fn(images) -> logits` and arrays, so it can run
inside a jitted / pmapped / shard_mapped train step on each device. `logits_fn` reaches the
jitted entry points as a pytree (`jax.tree_util.Partial`): a plain function is keyed by its identity
(pass the same function object to reuse compilations), while `Partial(f, variables)` with a fixed
`f` makes `variables` traced arguments, so new weights reuse the compiled attack.

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


_STATIC = ("families", "size", "steps", "optimizer", "loss", "targeted", "padding",
           "bisection_steps", "ssim_fn")


@functools.lru_cache(maxsize=None)
def _jitted_eval_apply(apply_fn):
  return jax.jit(lambda variables, images: apply_fn(variables, images, train=False))


def model_logits_fn(apply_fn, variables) -> jax.tree_util.Partial:
  """`images -> logits` of a Flax model in eval mode, jitted, as a pytree whose leaves are
  `variables`. Attacks compiled for it take the weights as arguments: one compilation serves
  every checkpoint of an architecture (in this process, and through JAX's persistent cache in
  the next), and XLA never folds the weights in as constants."""
  return jax.tree_util.Partial(_jitted_eval_apply(apply_fn), variables)


def as_pytree(logits_fn):
  """`logits_fn` as a pytree argument of a jitted function (see the module docstring)."""
  if isinstance(logits_fn, jax.tree_util.Partial):
    return logits_fn
  return jax.tree_util.Partial(logits_fn)


def _check_count(name, value, minimum):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_attack_args(images, labels, family, size, steps, restarts, optimizer, loss,
                       bisection_steps):
  """Validates `attack`'s arguments; returns images and labels as arrays."""
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
  return images, labels


# ----------------------------------------------------------------------------- one program for
# every family: the search runs on flat raw vectors wide enough for any of `families` (a family
# reads its leading entries; the rest get zero gradient, so neither sign steps nor Adam move
# them), and `lax.switch` on a traced family index builds the kernels. Blur, SSIM and the model,
# the costly part, are traced once for all families.


def _raw_width(families, size):
  return max(int(np.prod(family_params.raw_shape(f, size))) for f in families)


def random_starts(key, family, batch, size, restarts=1, width=None):
  """The attack's random starting points `(batch, restarts, width)`, flat and zero-padded.

  Restart r draws `family_params.random_raw(fold_in(key, r), family, batch, size)`, whatever
  `width`, so the starts of an example do not depend on the other families or on chunking.
  """
  starts = [family_params.random_raw(jax.random.fold_in(key, r), family, batch, size)
            .reshape(batch, -1) for r in range(restarts)]
  flat = jnp.stack(starts, axis=1)
  width = flat.shape[-1] if width is None else width
  return jnp.pad(flat, ((0, 0), (0, 0), (0, width - flat.shape[-1])))


def _family_kernels(families, family_index, flat, size):
  """Kernels `(B, k, k)` of `families[family_index]` from flat raw vectors `(B, width)`."""
  def kernels_of(family):
    shape = family_params.raw_shape(family, size)
    return lambda v: family_params.raw_to_kernels(
        family, v[:, :int(np.prod(shape))].reshape(v.shape[:1] + shape), size)
  if len(families) == 1:
    return kernels_of(families[0])(flat)
  return jax.lax.switch(family_index, [kernels_of(f) for f in families], flat)


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
    step_size: sign-step size / Adam learning rate, in raw units (traced, not static), times
      the family's `family_params.step_scale`.
    optimizer: "sign" (signed gradient ascent) or "adam".
    loss: "ce" or "margin"; targeted: see `attack_loss`.
    padding, bisection_steps, ssim_fn: as in `budget.make_admissible`.

  The best iterate over all steps and restarts is returned (a success beats a higher loss).
  `attack_families` runs several families over a large set in chunks, with the same results.
  """
  images, labels = _check_attack_args(images, labels, family, size, steps, restarts, optimizer,
                                      loss, bisection_steps)
  budget = budget_lib.check_budget(budget, images.shape[0])  # validates concrete values
  starts = random_starts(key, family, images.shape[0], size, restarts)
  return _attack(as_pytree(logits_fn), images, labels, budget, starts, 0, step_size,
                 families=(family,),
                 size=size, steps=steps, optimizer=optimizer, loss=loss, targeted=targeted,
                 padding=padding, bisection_steps=bisection_steps, ssim_fn=ssim_fn)


def _transform(optimizer, step_size):
  return (optax.sign_sgd if optimizer == "sign" else optax.adam)(step_size)


def _ascend(logits_fn, images, labels, budget, family_index, step_size, carry, *, families, size,
            optimizer, loss, targeted, padding, bisection_steps, ssim_fn):
  """One attack step: evaluate `raw` (keeping the best iterate per example), then move it.

  `carry` is `(raw, optimizer state, best)`, best = `(loss, success, kernels, images)`.
  """
  clean = jax.lax.stop_gradient(images)

  def objective(raw):
    kernels = _family_kernels(families, family_index, raw, size)
    blurred = blur_lib.blur(clean, kernels, padding=padding)
    alpha = budget_lib.admissible_alpha(clean, blurred, budget, bisection_steps, ssim_fn)
    a = alpha[:, None, None, None]  # already a constant (no gradient through alpha)
    attacked = a * blurred + (1.0 - a) * clean
    value, success = attack_loss(logits_fn(attacked), labels, targeted, loss)
    return jnp.sum(value), (value, success, budget_lib.blend(kernels, alpha), attacked)

  raw, opt_state, best = carry
  (_, (value, success, kernels, attacked)), grad = jax.value_and_grad(
      objective, has_aux=True)(raw)
  improved = _better(value, success, best[0], best[1])
  best = _select(improved, (value, success, kernels, attacked), best)
  # Ascent: the optimizers descend, so feed them the negated gradient. Each family's step is
  # `step_size` times its `family_params.step_scale`.
  updates, opt_state = _transform(optimizer, step_size).update(-grad, opt_state, raw)
  scale = jnp.asarray([family_params.step_scale(f) for f in families])[family_index]
  return optax.apply_updates(raw, jax.tree.map(lambda u: scale * u, updates)), opt_state, best


def _initial_best(images, size):
  batch = images.shape[0]
  identity = jnp.broadcast_to(kernels_lib.identity(size), (batch, size, size))
  # float32 explicitly: a weak-typed start would compile every host-driven step twice.
  return (jnp.full((batch,), -jnp.inf, jnp.float32), jnp.zeros((batch,), bool), identity,
          images)


def _result(images, best, ssim_fn):
  value, success, kernels, attacked = best
  return AttackResult(kernels, attacked, value, success, ssim_fn(images, attacked))


_STEP_STATIC = ("families", "size", "optimizer", "loss", "targeted", "padding",
                "bisection_steps", "ssim_fn")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _attack(logits_fn, images, labels, budget, starts, family_index, step_size, *, families, size,
            steps, optimizer, loss, targeted, padding, bisection_steps, ssim_fn):
  """The search from `starts` `(B, restarts, width)` over `families[family_index]`, as one
  traced program (for use inside jit, e.g. a PGD train step). `_attack_on_host` is the same
  search with the loop on the host."""
  step = functools.partial(
      _ascend, logits_fn, images, labels, budget, family_index, step_size, families=families,
      size=size, optimizer=optimizer, loss=loss, targeted=targeted, padding=padding,
      bisection_steps=bisection_steps, ssim_fn=ssim_fn)

  def restart(r, best):
    raw = jax.lax.dynamic_index_in_dim(starts, r, axis=1, keepdims=False)
    # steps + 1 evaluations: the last update is never evaluated, which costs one backward pass
    # but keeps a single traced step body.
    carry = (raw, _transform(optimizer, step_size).init(raw), best)
    _, _, best = jax.lax.fori_loop(0, steps + 1, lambda _, c: step(c), carry)
    return best

  best = jax.lax.fori_loop(0, starts.shape[1], restart, _initial_best(images, size))
  return _result(images, best, ssim_fn)


# XLA:CPU ran the step 5-6x slower inside a `fori_loop` than as its own program (ResNet-20, 250
# CIFAR images, 2 cores: 16.6 s vs 2.6-3.0 s a step, the same with the loop unrolled), so the
# evaluators drive the steps from Python: one compiled step serves every step, restart, family,
# budget and flip probe.
_ascend_jit = jax.jit(_ascend, static_argnames=_STEP_STATIC)
_result_jit = jax.jit(_result, static_argnames=("ssim_fn",))


def _attack_on_host(logits_fn, images, labels, budget, starts, family_index, step_size, *,
                    families, size, steps, optimizer, loss, targeted, padding, bisection_steps,
                    ssim_fn):
  """`_attack` with the restart and step loops in Python around one jitted step."""
  statics = dict(families=families, size=size, optimizer=optimizer, loss=loss, targeted=targeted,
                 padding=padding, bisection_steps=bisection_steps, ssim_fn=ssim_fn)
  best = _initial_best(images, size)
  for r in range(starts.shape[1]):
    raw = jnp.asarray(starts[:, r])
    carry = (raw, _transform(optimizer, step_size).init(raw), best)
    for _ in range(steps + 1):
      carry = _ascend_jit(as_pytree(logits_fn), images, labels, budget, family_index, step_size,
                          carry,
                          **statics)
    best = carry[2]
  return _result_jit(images, best, ssim_fn=ssim_fn)


# ----------------------------------------------------------------------------- refinement


def refine(logits_fn, images, labels, budget, kernels, *, steps, linear_steps=1, step_size=0.1,
           best_iterate=False, floor=0.05, padding="reflect",
           bisection_steps=budget_lib.DEFAULT_BISECTION_STEPS, ssim_fn=measures.ssim):
  """A cheap per-example search from proposed `kernels` `(B, k, k)`: sign ascent on free-form
  logits, with `steps` gradients of the classifier and `linear_steps` sign steps per gradient.

  Each classifier gradient (one forward and input-gradient pass) is the gradient of the loss with
  respect to the attacked image; the `linear_steps` steps that follow ascend the loss linearized
  in that image, `<gradient, attacked image(logits)>`, which costs only blur and SSIM (the
  expensive part, the classifier's backward pass, is shared: "you only propagate once"). With
  `linear_steps=1` this is plain sign ascent. On a CIFAR-10 classifier (fast recipe, 256 training
  images, budget 0.1, random starts) one gradient with 4 linearized steps gained as much loss as
  2-3 full steps.

  For training adversaries: no restarts; the result is raw (callers make it admissible). It is
  the last iterate, or with `best_iterate` the iterate of highest loss per example: the losses
  of the iterates a gradient is taken at come free with the gradients, and the last iterate's
  costs one more forward pass. The logits start at
  `log((1 - floor) kernels + floor / k^2)` (the floor lets weights outside a proposal's support
  grow within a few steps) and move by `step_size * family_params.step_scale("free_form")`.
  The result is differentiable in `kernels` straight through the search (the gradient is the
  softmax's at the refined logits, as if the steps were constants), so a network that proposes
  `kernels` learns starts that refine well. Python-unrolled: XLA:CPU runs a small loop body faster
  unrolled than in a `fori_loop`.
  """
  size = kernels.shape[-1]
  start = jnp.log((1.0 - floor) * kernels + floor / size**2)
  clean = jax.lax.stop_gradient(images)

  def attacked(logits):
    blurred = blur_lib.blur(clean, kernels_lib.free_form(logits), padding=padding)
    alpha = budget_lib.admissible_alpha(clean, blurred, budget, bisection_steps, ssim_fn)
    a = alpha[:, None, None, None]
    return a * blurred + (1.0 - a) * clean

  def loss(image):
    per_example = attack_loss(logits_fn(image), labels)[0]
    return jnp.sum(per_example), per_example

  def keep_best(best, best_loss, current, value):
    return (jnp.where((value > best_loss)[:, None, None], current, best),
            jnp.maximum(value, best_loss))

  step = step_size * family_params.step_scale("free_form")
  logits = best = jax.lax.stop_gradient(start)
  best_loss = jnp.full(labels.shape, -jnp.inf)
  for _ in range(steps):
    image, pullback = jax.vjp(attacked, logits)
    gradient, value = jax.grad(loss, has_aux=True)(image)
    # Without best_iterate this bookkeeping is unused, and XLA drops it.
    best, best_loss = keep_best(best, best_loss, logits, value)
    for i in range(linear_steps):
      if i:  # The first linearized step reuses the pullback at the classifier's image.
        _, pullback = jax.vjp(attacked, logits)
      logits = logits + step * jnp.sign(pullback(gradient)[0])
  if best_iterate and steps:
    logits, _ = keep_best(best, best_loss, logits, loss(attacked(logits))[1])
  return kernels_lib.free_form(start + jax.lax.stop_gradient(logits - start))


# ----------------------------------------------------------------------------- minimal blur to flip


class FlipResult(NamedTuple):
  budget: jax.Array  # (B,) smallest budget found that flips; 0 if misclassified clean; inf: never
  flipped: jax.Array  # (B,) bool: flipped at some budget <= 1 (or misclassified clean)
  ssim: jax.Array  # (B,) SSIM of the flipping image (1 if misclassified clean, nan if never)
  kernels: jax.Array  # (B, k, k) the flipping admissible kernel (identity when none)


def _check_flip_args(search_steps, min_budget):
  _check_count("search_steps", search_steps, 0)
  if not isinstance(min_budget, jax.core.Tracer) and not 0 < float(min_budget) < 1:
    raise ValueError(f"min_budget must lie in (0, 1), got {min_budget!r}")


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
  _check_flip_args(search_steps, min_budget)
  images, labels = _check_attack_args(images, labels, family, size, steps, restarts, optimizer,
                                      loss, bisection_steps)
  starts = random_starts(key, family, images.shape[0], size, restarts)
  return _minimal_flip_budget(
      as_pytree(logits_fn), images, labels, starts, 0, min_budget, step_size,
      search_steps=search_steps, families=(family,), size=size, steps=steps, optimizer=optimizer,
      loss=loss, targeted=targeted, padding=padding, bisection_steps=bisection_steps,
      ssim_fn=ssim_fn)


def _flip_start(images, size, min_budget):
  """The bisection's carry: low, high, ever flipped, SSIM and kernel of the last flip."""
  batch = images.shape[0]
  identity = jnp.broadcast_to(kernels_lib.identity(size), (batch, size, size))
  return (jnp.full((batch,), min_budget, jnp.float32), jnp.ones((batch,)),
          jnp.zeros((batch,), bool), jnp.full((batch,), jnp.nan), identity)


def _probe_budget(first, carry):
  # The first probe is budget 1 (can it flip at all?); then the geometric midpoint, i.e.
  # bisection on log(budget).
  low, high = carry[:2]
  return jnp.where(first, 1.0, jnp.sqrt(low * high))


def _after_probe(carry, middle, result):
  low, high, ever, found_ssim, found_kernels = carry
  flip = result.success
  return (jnp.where(flip, low, middle), jnp.where(flip, middle, high), ever | flip,
          jnp.where(flip, result.ssim, found_ssim),
          jnp.where(flip[:, None, None], result.kernels, found_kernels))


def _flip_result(clean_success, carry, size):
  _, high, ever, found_ssim, found_kernels = carry
  identity = kernels_lib.identity(size)
  flipped = clean_success | ever
  budget = jnp.where(clean_success, 0.0, jnp.where(ever, high, jnp.inf))
  ssim = jnp.where(clean_success, 1.0, found_ssim)
  kernels = jnp.where(clean_success[:, None, None], identity, found_kernels)
  return FlipResult(budget, flipped, ssim, kernels)


def _clean_success(logits_fn, images, labels, targeted):
  return attack_loss(logits_fn(images), labels, targeted, "ce")[1]


@functools.partial(jax.jit, static_argnames=_STATIC + ("search_steps",))
def _minimal_flip_budget(logits_fn, images, labels, starts, family_index, min_budget, step_size,
                         *, search_steps, families, size, steps, optimizer, loss, targeted,
                         padding, bisection_steps, ssim_fn):
  """The flip search as one traced program; `_minimal_flip_on_host` loops on the host."""
  run = functools.partial(
      _attack, logits_fn, images, labels, starts=starts, family_index=family_index,
      step_size=step_size, families=families, size=size, steps=steps, optimizer=optimizer,
      loss=loss, targeted=targeted, padding=padding, bisection_steps=bisection_steps,
      ssim_fn=ssim_fn)

  def probe(i, carry):
    middle = _probe_budget(i == 0, carry)
    return _after_probe(carry, middle, run(middle))  # one traced attack serves every probe

  carry = jax.lax.fori_loop(0, search_steps + 1, probe, _flip_start(images, size, min_budget))
  return _flip_result(_clean_success(logits_fn, images, labels, targeted), carry, size)


_probe_budget_jit = jax.jit(_probe_budget)
_after_probe_jit = jax.jit(_after_probe)
_flip_result_jit = jax.jit(_flip_result, static_argnames=("size",))
_clean_success_jit = jax.jit(_clean_success, static_argnames=("targeted",))


def _minimal_flip_on_host(logits_fn, images, labels, starts, family_index, min_budget, step_size,
                          *, search_steps, families, size, targeted, **attack_statics):
  """`_minimal_flip_budget` with the probe loop (and each attack's loops) in Python."""
  carry = _flip_start(images, size, min_budget)
  for i in range(search_steps + 1):
    middle = _probe_budget_jit(i == 0, carry)
    result = _attack_on_host(logits_fn, images, labels, middle, starts, family_index, step_size,
                             families=families, size=size, targeted=targeted, **attack_statics)
    carry = _after_probe_jit(carry, middle, result)
  return _flip_result_jit(_clean_success_jit(as_pytree(logits_fn), images, labels, targeted),
                          carry, size=size)


# ----------------------------------------------------------------------------- many families, in
# chunks: what the evaluators run over hundreds or thousands of examples.


# `attack`'s defaults, for the runners below.
DEFAULTS = dict(steps=10, step_size=0.1, optimizer="sign", loss="ce", targeted=False,
                padding="reflect", bisection_steps=budget_lib.DEFAULT_BISECTION_STEPS,
                ssim_fn=measures.ssim)


def _in_chunks(fn, arrays, batch_size):
  """`fn(*arrays)` computed on consecutive chunks of `batch_size` examples, as numpy.

  The last chunk is padded by repeating its last example, so every call has one shape (one
  compilation); the padding's outputs are dropped. Examples are independent in every function
  used here (the model runs in eval mode), so chunking changes results by float rounding only.
  """
  count = arrays[0].shape[0]
  if batch_size is None or batch_size >= count:
    return jax.tree.map(np.asarray, fn(*arrays))
  outputs = []
  for start in range(0, count, batch_size):
    chunk = [np.asarray(a[start:start + batch_size]) for a in arrays]
    kept = chunk[0].shape[0]
    if kept < batch_size:
      chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - kept, axis=0)]) for c in chunk]
    outputs.append(jax.tree.map(lambda x, n=kept: np.asarray(x)[:n], fn(*chunk)))
  return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def _prepare(families, images, labels, size, restarts, attack_kwargs):
  """Validates the arguments of the many-family runners before any work; fills in defaults.

  Returns families (a tuple), images and labels (numpy), the static attack arguments and the
  step size.
  """
  families = tuple(families)
  if not families:
    raise ValueError("families must not be empty")
  kwargs = dict(DEFAULTS, **attack_kwargs)
  images, labels = np.asarray(images), np.asarray(labels)
  for family in families:
    _check_attack_args(images[:1], labels[:1], family, size, kwargs["steps"], restarts,
                       kwargs["optimizer"], kwargs["loss"], kwargs["bisection_steps"])
  step_size = kwargs.pop("step_size")
  return families, images, labels, kwargs, step_size


def _family_programs(families, one_program):
  """Per family: the families tuple its program is traced with, and its index in it."""
  if one_program:
    return {f: (tuple(families), i) for i, f in enumerate(families)}
  return {f: ((f,), 0) for f in families}


def _family_runs(logits_fn, count, key, families, size, restarts, one_program, host_loop,
                 step_size, kwargs):
  """Per family (in order): its random starts `(count, restarts, width)` for the whole set (key
  `fold_in(key, index)`) and `run(images, labels, budgets, starts)`, its attack on any subset."""
  logits_fn = as_pytree(logits_fn)  # Once: every chunk then hits the same compiled step.
  driver = _attack_on_host if host_loop else _attack
  for index, (family, (traced, family_index)) in enumerate(
      _family_programs(families, one_program).items()):
    starts = random_starts(jax.random.fold_in(key, index), family, count, size, restarts,
                           _raw_width(traced, size))
    run = lambda x, y, b, s, fi=family_index, t=traced: driver(
        logits_fn, x, y, b, s, fi, step_size, families=t, size=size, **kwargs)
    yield family, np.asarray(starts), run


def attack_families(logits_fn, images, labels, budget, key, *, families=families_lib.FAMILIES,
                    batch_size=None, one_program=True, host_loop=True, size=7, restarts=1,
                    **attack_kwargs):
  """`attack` for each family (key `fold_in(key, index)`), in chunks of `batch_size` examples.

  Returns `{family: AttackResult}` of numpy arrays, equal to calling `attack` per family on the
  whole set up to float rounding (the random starts are drawn for the whole set, then chunked).
  `one_program` compiles one program for every family (the family index is traced) and, since
  the budget is traced too, one for every budget; otherwise one per family. `host_loop` runs
  the steps from Python around one compiled step (much faster on XLA:CPU, see `_ascend_jit`);
  otherwise the whole search is one traced program. `batch_size=None` runs the whole set as
  one batch.
  """
  families, images, labels, kwargs, step_size = _prepare(families, images, labels, size, restarts,
                                                         attack_kwargs)
  budget = np.asarray(budget_lib.check_budget(budget, images.shape[0]))
  return {family: AttackResult(*_in_chunks(run, (images, labels, budget, starts), batch_size))
          for family, starts, run in _family_runs(
              logits_fn, len(labels), key, families, size, restarts, one_program, host_loop,
              step_size, kwargs)}


def minimal_flip_families(logits_fn, images, labels, key, *, families=families_lib.FAMILIES,
                          batch_size=None, one_program=True, host_loop=True, size=7, restarts=1,
                          search_steps=8, min_budget=1e-3, **attack_kwargs):
  """`minimal_flip_budget` for each family (key `fold_in(key, index)`), in chunks.

  Returns `{family: FlipResult}` of numpy arrays; `batch_size`, `one_program` and `host_loop`
  as in `attack_families`.
  """
  _check_flip_args(search_steps, min_budget)
  families, images, labels, kwargs, step_size = _prepare(families, images, labels, size, restarts,
                                                         attack_kwargs)
  logits_fn = as_pytree(logits_fn)  # Once: every chunk then hits the same compiled step.
  results = {}
  for index, (family, (traced, family_index)) in enumerate(
      _family_programs(families, one_program).items()):
    starts = random_starts(jax.random.fold_in(key, index), family, images.shape[0], size,
                           restarts, _raw_width(traced, size))
    driver = _minimal_flip_on_host if host_loop else _minimal_flip_budget
    run = lambda x, y, s, fi=family_index, t=traced, f=driver: f(
        logits_fn, x, y, s, fi, min_budget, step_size, search_steps=search_steps, families=t,
        size=size, **kwargs)
    results[family] = FlipResult(*_in_chunks(run, (images, labels, np.asarray(starts)),
                                             batch_size))
  return results


# ----------------------------------------------------------------------------- summaries


def _success_on(run, rows, arrays, chunk, buckets=8):
  """`run(*arrays)`'s success flags for `rows` only, `chunk` rows at a time. A short chunk is
  padded (repeating its last row) to a multiple of `chunk / buckets`, so subsets of any size
  hit at most `buckets` compiled shapes."""
  quantum = -(-chunk // buckets)
  out = []
  for start in range(0, rows.size, chunk):
    piece = rows[start:start + chunk]
    shape = min(chunk, -(-piece.size // quantum) * quantum)
    padded = np.concatenate([piece, np.repeat(piece[-1:], shape - piece.size)])
    out.append(np.asarray(run(*(a[padded] for a in arrays)).success)[:piece.size])
  return np.concatenate(out)


def worst_case_correct(logits_fn, images, labels, budget, key, *, families=families_lib.FAMILIES,
                       batch_size=None, one_program=True, host_loop=True, size=7, restarts=1,
                       **attack_kwargs):
  """Per example, whether it survives each family's worst admissible blur: `{key: (N,) bool}`.

  An example is correct under a family when it is classified correctly clean and the family's
  attack does not flip it. Keys: "clean", every family, and "all" (no family flipped it).
  `attack_kwargs` go to `attack` (untargeted); `batch_size`, `one_program` and `host_loop` as in
  `attack_families`.

  The same answers as `attack_families`' success flags, for less: an example misclassified clean
  is never attacked, and restart r of a family runs only on the examples its earlier restarts
  did not flip (a success is kept once found, so later restarts cannot change it).
  """
  if attack_kwargs.get("targeted"):
    raise ValueError("worst_case_accuracy is untargeted; targeted must be False")
  families, images, labels, kwargs, step_size = _prepare(families, images, labels, size, restarts,
                                                         attack_kwargs)
  budget = np.asarray(budget_lib.check_budget(budget, images.shape[0]))
  predict = lambda x: jnp.argmax(logits_fn(x), axis=-1)
  clean = _in_chunks(predict, (images,), batch_size) == labels
  correct = {"clean": clean}
  chunk = min(batch_size or len(labels), len(labels))
  for family, starts, run in _family_runs(logits_fn, len(labels), key, families, size, restarts,
                                          one_program, host_loop, step_size, kwargs):
    flipped = ~clean
    for r in range(restarts):
      left = np.nonzero(~flipped)[0]
      if not left.size:
        break
      flipped[left] |= _success_on(run, left, (images, labels, budget, starts[:, r:r + 1]), chunk)
    correct[family] = ~flipped
  correct["all"] = functools.reduce(np.logical_and, list(correct.values()))
  return correct


def worst_case_accuracy(logits_fn, images, labels, budget, key, **kwargs):
  """Accuracy under the per-example worst admissible blur of each family, and over all of them.

  The means of `worst_case_correct` (same arguments): `{"clean": ..., family: ..., "all": ...}`;
  "all" counts an example correct only if no family's attack flipped it.
  """
  return {name: float(np.mean(correct))
          for name, correct in worst_case_correct(logits_fn, images, labels, budget, key,
                                                  **kwargs).items()}


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
