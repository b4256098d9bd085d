"""Joint min-max training of the classifier against a blur adversary (`config.trainer="adversarial"`).

At every step the adversary proposes one kernel per attacked example (an evenly spread
`1 - clean_fraction` share of each batch, `attacked_rows`; the rest stays clean), optionally
refined per example (`refine_steps`, see below), the
kernels are made admissible under the SSIM budget (blend with the identity,
`budget.admissible_alpha`), the classifier descends on its cross-entropy over the batch and the
adversary ascends on the same loss. Both gradients come from ONE backward pass: the blurred
images go through a gradient-reversal identity, so the classifier's gradient and the negated
adversary gradient fall out together. The adversary also pays a fidelity term `(ssim(x, blur(x, k)) - (1 - budget))^2` on
its raw kernels, which keeps its proposals near the budget boundary instead of leaning on the
projection (which would otherwise flatten its gradient once every kernel is clipped).

`config.adversary.kind` picks what proposes kernels:
- "network": the learned `adversary.KernelAdversary` (amortized: one forward pass per step);
- "pgd": a per-example PGD-K attack on the classifier (`attacks.attack`), K = `pgd_steps`;
- "random": random admissible kernels of the families (blur augmentation at the budget).

With `config.defense.consistency_weight` > 0 the attacked rows also go through the classifier
clean, and the loss adds the weighted Jensen-Shannon divergence between their clean and blurred
predictions (`losses.consistency_loss`; the adversary ascends on it too): TRADES-like, at
`1 - clean_fraction` more rows per step.

`refine_steps > 0` starts a per-example search from those kernels (the network's proposal, a
PGD result or a random kernel; `attacks.refine`): `refine_steps` classifier gradients, each
followed by `refine_linear_steps` sign steps on the loss linearized in the attacked image. With
the network, the gradient reaches it straight through the search, so it learns starting points
that refine well. Each classifier gradient costs one forward and input-gradient pass over the
attacked rows; a linearized step, a blur and an SSIM projection.

How strong the adversary is, against a per-example reference attack on the current classifier,
is measured periodically during training (`config.adversary.strength_every_steps`, see
`trainers/strength.py`) through the trainer's `adversary` function.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metrics
from jax import lax

from blur_adv import config_checks, optim
from blur_adv.defense import augmentation, front_end
from blur_adv.defense import config as defense_config
from blur_adv.models import adversary as adversary_lib
from blur_adv.models.test_time_augmentation import with_test_time_augmentation
from blur_adv.ops import attacks, families, family_params, measures
from blur_adv.ops import blur as blur_lib
from blur_adv.ops import budget as budget_lib
from blur_adv.parallel import DATA_AXIS
from blur_adv.trainers.base import (TRAINERS, Trainer, TrainState, classifier_eval_step,
                                    sum_over_devices)
from blur_adv.trainers.losses import consistency_loss, cross_entropy

KINDS = ("network", "pgd", "random")
FIELDS = ("kind", "kernel_size", "families", "features", "noise_dim", "learning_rate",
          "fidelity_weight", "clean_fraction", "update_every", "warmup_steps", "pgd_steps",
          "refine_steps", "refine_linear_steps", "refine_step_size", "refine_best_iterate",
          "strength_every_steps", "strength_examples", "strength_attack_steps",
          "strength_attack_restarts")


def check_config(config):
  """One-line errors for `config.adversary` (run by `config_checks.validate`)."""
  adv = config.adversary
  config_checks.check_keys("adversary", adv, FIELDS)
  field = lambda name: f"adversary.{name}"
  if adv.kind not in KINDS:
    raise config_checks.unknown_name("adversary kind", field("kind"), adv.kind, KINDS)
  config_checks.check_kernel_size(field("kernel_size"), adv.kernel_size)
  config_checks.check_names(field("families"), adv.families, families.FAMILIES, "family")
  for name in ("features", "noise_dim", "update_every", "pgd_steps"):
    config_checks.check_int(field(name), adv[name])
  config_checks.check_int(field("warmup_steps"), adv.warmup_steps, minimum=0)
  config_checks.check_int(field("refine_steps"), adv.refine_steps, minimum=0)
  config_checks.check_int(field("refine_linear_steps"), adv.refine_linear_steps)
  config_checks.check_number(field("refine_step_size"), adv.refine_step_size, 0, low_open=True)
  config_checks.check_bool(field("refine_best_iterate"), adv.refine_best_iterate)
  config_checks.check_int(field("strength_every_steps"), adv.strength_every_steps, minimum=0)
  for name in ("strength_examples", "strength_attack_steps", "strength_attack_restarts"):
    config_checks.check_int(field(name), adv[name])
  config_checks.check_number(field("learning_rate"), adv.learning_rate, 0, low_open=True)
  config_checks.check_number(field("fidelity_weight"), adv.fidelity_weight, 0)
  config_checks.check_number(field("clean_fraction"), adv.clean_fraction, 0, 1, high_open=True)
  if config.trainer == "adversarial" and not attacked_rows(config.batch_size, adv.clean_fraction).size:
    config_checks.fail(field("clean_fraction"), adv.clean_fraction,
                       f"leaves no example of a batch of {config.batch_size} to attack.")


config_checks.register_fields("adversary", validator=check_config)


@flax.struct.dataclass
class AdversarialMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
  grad_norm: metrics.Average.from_output("grad_norm")
  adversarial_ssim: metrics.Average.from_output("adversarial_ssim")
  kernel_spread: metrics.Average.from_output("kernel_spread")
  alpha: metrics.Average.from_output("alpha")
  loss_gain: metrics.Average.from_output("loss_gain")
  fidelity: metrics.Average.from_output("fidelity")
  consistency: metrics.Average.from_output("consistency")  # 0 unless consistency_weight > 0


@jax.custom_vjp
def _reverse_gradient(x):
  return x


_reverse_gradient.defvjp(lambda x: (x, None), lambda _, g: (-g,))


def _propose_kernels(adv, adversary_model, adversary_params, classifier_logits, images, labels,
                     budget, keys, attack_rng):
  """Raw (not yet admissible) kernels `(B, k, k)` from the configured kind of adversary, and
  the network's family mixture `(B, F)` (None for the other kinds).

  The network's proposals depend only on each example's key; the random starts of "pgd" and
  "random" are drawn per device, so those kinds depend on how the batch is split.
  """
  batch = images.shape[0]
  if adv.kind == "network":
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), (adv.noise_dim,)))(keys)
    return adversary_model.apply({"params": adversary_params}, images, noise)
  # The non-learned kinds draw one family per step (the same on every device), so a PGD step
  # costs one attack; lax.switch runs only the drawn family's branch.
  family_index = jax.random.randint(attack_rng, (), 0, len(adv.families))

  def propose(family):
    if adv.kind == "random":
      return lambda: family_params.random_kernels(attack_rng, family, batch, adv.kernel_size)
    return lambda: attacks.attack(classifier_logits, images, labels, budget, attack_rng,
                                  family=family, size=adv.kernel_size,
                                  steps=adv.pgd_steps).kernels

  kernels = lax.switch(family_index, [propose(family) for family in adv.families])
  return lax.stop_gradient(kernels), None


def attacked_rows(batch: int, clean_fraction: float) -> np.ndarray:
  """Rows of a device batch trained on blurred images: `1 - clean_fraction` of them, spread evenly
  (row i is attacked when floor((i + 1) s) > floor(i s), s = 1 - clean_fraction).

  Static, so only these rows pay for the adversary. Batches are shuffled, so which images get
  blurred is random. A device's rows are the global batch's rows on that device whenever the
  per-device batch times s is an integer (e.g. any even per-device batch at clean_fraction 0.5),
  so results do not depend on how the batch is split."""
  share, rows = 1.0 - clean_fraction, np.arange(batch)
  # The epsilon absorbs float error in products that are whole numbers (e.g. 10 * 0.7).
  return np.nonzero(np.floor((rows + 1) * share + 1e-9) > np.floor(rows * share + 1e-9))[0]


def _loss_gain(per_example, attacked):
  """Mean loss of the attacked examples minus that of the clean ones, over the global batch."""
  sums = lax.psum(jnp.stack([jnp.sum(per_example * attacked), jnp.sum(attacked),
                             jnp.sum(per_example * (1 - attacked)), jnp.sum(1 - attacked)]),
                  DATA_AXIS)
  return sums[0] / jnp.maximum(sums[1], 1.0) - sums[2] / jnp.maximum(sums[3], 1.0)


@TRAINERS.register("adversarial")
def adversarial_trainer(config, num_classes: int, total_steps: int,
                        steps_per_epoch: int) -> Trainer:
  """Classifier + blur adversary trained jointly (see module docstring)."""
  adv = config.adversary
  model = front_end.create_model(config, num_classes)
  tx = front_end.create_optimizer(config, total_steps, steps_per_epoch)
  adversary_model = adversary_lib.KernelAdversary(
      kernel_size=adv.kernel_size, families=tuple(adv.families), features=adv.features)
  adversary_tx = optax.adam(adv.learning_rate)
  consistency_weight = defense_config.settings(config).consistency_weight

  def init_state(rng, images):
    classifier_rng, adversary_rng = jax.random.split(rng)
    variables = model.init(classifier_rng, images, train=False)
    adversary_params = adversary_model.init(
        adversary_rng, images[:1], jnp.zeros((1, adv.noise_dim)))["params"]
    return TrainState.create(
        apply_fn=with_test_time_augmentation(model.apply, config.get("tta", "none")),
        params=variables["params"], tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        extra={"adversary_params": adversary_params,
               "adversary_opt_state": adversary_tx.init(adversary_params)},
        lookahead=optim.lookahead(config, total_steps))

  def plain_logits(state, x):
    # The plain model (no test-time augmentation): the attack during training targets what
    # is being trained.
    return model.apply({"params": state.params, "batch_stats": state.batch_stats}, x,
                       train=False)

  def refined(logits_fn, images, labels, kernels):
    if not adv.refine_steps:
      return kernels
    return attacks.refine(logits_fn, images, labels, config.budget, kernels,
                          steps=adv.refine_steps, linear_steps=adv.refine_linear_steps,
                          step_size=adv.refine_step_size, best_iterate=adv.refine_best_iterate)

  def adversary(state: TrainState, images, labels, rng):
    """The adversary's admissible kernels `(B, k, k)` for `images` as a train step with `rng`
    would propose them (on one device), and its mean family mixture `(F,)` or None."""
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(labels.shape[0]))
    logits_fn = functools.partial(plain_logits, state)
    raw, mixture = _propose_kernels(
        adv, adversary_model, state.extra["adversary_params"], logits_fn, images, labels,
        config.budget, keys, jax.random.fold_in(rng, 3))
    raw = refined(logits_fn, images, labels, raw)
    alpha = budget_lib.admissible_alpha(images, blur_lib.blur(images, raw), config.budget)
    return budget_lib.blend(raw, alpha), None if mixture is None else jnp.mean(mixture, axis=0)

  def train_step(state: TrainState, batch, rng):
    labels = batch["label"]
    keys = augmentation.example_keys(rng, labels.shape[0])
    images = augmentation.augment_images(config, keys, batch["image"])  # Identity unless configured.
    attack_rng = jax.random.fold_in(rng, 3)
    rows = attacked_rows(labels.shape[0], adv.clean_fraction)
    warm = state.step >= adv.warmup_steps  # before that: clean training, adversary idle
    eval_logits = functools.partial(plain_logits, state)
    clean, clean_labels = images[rows], labels[rows]

    def losses(params, adversary_params):
      proposed, _ = _propose_kernels(adv, adversary_model, adversary_params, eval_logits, clean,
                                     clean_labels, config.budget, keys[rows], attack_rng)
      raw = refined(eval_logits, clean, clean_labels, proposed)
      blurred_raw = blur_lib.blur(clean, raw)
      alpha = budget_lib.admissible_alpha(clean, blurred_raw, config.budget)
      a = alpha[:, None, None, None]
      blurred = _reverse_gradient(a * blurred_raw + (1.0 - a) * clean)
      inputs = images.at[rows].set(jnp.where(warm, blurred, clean))
      inputs = augmentation.add_noise(config, keys, inputs)  # Identity unless configured.
      if consistency_weight > 0:  # The attacked rows' clean view; BatchNorm sees both.
        inputs = jnp.concatenate([inputs, clean])
      logits, updates = state.apply_fn(
          {"params": params, "batch_stats": state.batch_stats}, inputs, train=True,
          mutable=["batch_stats"])
      logits, clean_logits = logits[:labels.shape[0]], logits[labels.shape[0]:]
      per_example = cross_entropy(logits, labels, config.label_smoothing)
      consistency = (consistency_loss(clean_logits, logits[rows]) if consistency_weight > 0
                     else 0.0)
      # On the proposal, so that the network (not the refinement) stays near the boundary.
      proposed_ssim = measures.ssim(clean, blur_lib.blur(clean, proposed) if adv.refine_steps
                                    else blurred_raw)
      fidelity = jnp.mean((proposed_ssim - (1.0 - config.budget)) ** 2)
      total = (per_example.mean() + consistency_weight * consistency
               + adv.fidelity_weight * fidelity)
      kernels = budget_lib.blend(raw, alpha)
      aux = dict(per_example=per_example, logits=logits, batch_stats=updates["batch_stats"],
                 kernels=kernels, alpha=alpha, fidelity=fidelity, consistency=consistency,
                 ssim=measures.ssim(clean, lax.stop_gradient(blurred)))
      return total, aux

    (grads, adversary_grads), aux = jax.grad(losses, argnums=(0, 1), has_aux=True)(
        state.params, state.extra["adversary_params"])
    grads = lax.pmean(grads, DATA_AXIS)
    adversary_grads = lax.pmean(adversary_grads, DATA_AXIS)
    new_state = state.apply_gradients(grads=grads, batch_stats=aux["batch_stats"])

    updates, opt_state = adversary_tx.update(
        adversary_grads, state.extra["adversary_opt_state"], state.extra["adversary_params"])
    adversary_params = optax.apply_updates(state.extra["adversary_params"], updates)
    learn = warm & (state.step % adv.update_every == 0) & (adv.kind == "network")
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(learn, n, o), new, old)
    new_state = new_state.replace(extra={
        **new_state.extra,  # Lookahead's slow copy, if any.
        "adversary_params": keep(adversary_params, state.extra["adversary_params"]),
        "adversary_opt_state": keep(opt_state, state.extra["adversary_opt_state"])})

    per_example = aux["per_example"]
    attacked = jnp.zeros(labels.shape).at[rows].set(warm.astype(jnp.float32))
    # Loss gain: mean loss on the blurred part of the global batch minus that on its clean part.
    # A ratio, so it is formed from sums over all devices (per-device ratios, averaged, would
    # depend on how the batch is split); every device then reports the same value.
    gain = _loss_gain(per_example, attacked)
    step_metrics = AdversarialMetrics.single_from_model_output(
        loss=per_example,
        accuracy=(jnp.argmax(aux["logits"], -1) == labels).astype(jnp.float32),
        grad_norm=optax.global_norm(grads)[None],
        adversarial_ssim=aux["ssim"],
        kernel_spread=measures.kernel_spread(aux["kernels"]),
        alpha=aux["alpha"],
        loss_gain=gain[None],
        fidelity=aux["fidelity"][None],
        consistency=jnp.asarray(aux["consistency"], jnp.float32)[None])
    return new_state, sum_over_devices(step_metrics)

  return Trainer(init_state=init_state, train_step=train_step, eval_step=classifier_eval_step,
                 adversary=adversary)
