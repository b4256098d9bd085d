"""Optimizer and learning-rate schedule from the config."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from blur_adv import config_checks

# Training optimizers by `config.optimizer` (the attacks' step rules are `attacks.STEP_RULES`).
# "sgd_muon": Muon on the conv kernels, Nesterov SGD on every other parameter (`create_optimizer`).
OPTIMIZERS = ("sgd", "adamw", "sgd_muon")
# Learning-rate shapes by `config.lr_schedule`; both peak after `config.warmup_epochs`.
LR_SCHEDULES = ("cosine", "triangular")
# The triangular schedule starts and ends at these fractions of the peak (the CIFAR-10 speedrun's
# published schedule: 0.2 -> 1 -> 0.07).
TRIANGULAR_START, TRIANGULAR_END = 0.2, 0.07


# Muon at a fixed filter norm (`muon_for_convs`) is only the same network when BatchNorm follows
# every conv, so the filters' scale is free: true of these models (not of the ResNets, whose
# residual sums and stems see conv outputs unnormalized, nor of the U-Net front end).
MUON_MODELS = ("whitened_convnet",)


def check_config(config):
  if config.optimizer not in OPTIMIZERS:
    raise config_checks.unknown_name("optimizer", "optimizer", config.optimizer, OPTIMIZERS)
  if config.optimizer != "sgd_muon":
    return
  for name in ("muon_learning_rate", "muon_momentum"):
    if name not in config:
      config_checks.fail("optimizer", config.optimizer,
                         f"needs config.{name} (configs/default.py).")
  config_checks.check_number("muon_learning_rate", config.muon_learning_rate, 0, low_open=True)
  config_checks.check_number("muon_momentum", config.muon_momentum, 0, 1, high_open=True)
  if config.get("model") not in MUON_MODELS:
    config_checks.fail("optimizer", config.optimizer,
                       f"needs BatchNorm after every conv: model one of {MUON_MODELS}, not "
                       f"{config.get('model')!r}.")
  defense = config.get("defense")
  if defense is not None and defense.front_end == "unet" and defense.unet_trainable:
    config_checks.fail("optimizer", config.optimizer, "a trainable U-Net front end has convs "
                       "without BatchNorm: set defense.unet_trainable=False or another optimizer.")


def check_schedule(config):
  if config.lr_schedule not in LR_SCHEDULES:
    raise config_checks.unknown_name("learning-rate schedule", "lr_schedule", config.lr_schedule,
                                     LR_SCHEDULES)
  config_checks.check_number("bias_lr_scale", config.bias_lr_scale, 0, low_open=True)


def check_lookahead(config):
  config_checks.check_int("lookahead_every", config.lookahead_every, minimum=0)
  config_checks.check_number("lookahead_decay", config.lookahead_decay, 0, 1, high_open=True)


config_checks.register_fields("optimizer", validator=check_config)
config_checks.register_fields("muon_learning_rate", "muon_momentum")
config_checks.register_fields("lr_schedule", "bias_lr_scale", validator=check_schedule)
config_checks.register_fields("lookahead_every", "lookahead_decay", validator=check_lookahead)


def learning_rate_schedule(config, total_steps: int, steps_per_epoch: int,
                           peak: float | None = None) -> optax.Schedule:
  """The peak (by default `learning_rate` scaled by batch size / 256) is reached after
  `warmup_epochs`.

  "cosine" (default): linear warm-up from zero, then cosine decay to zero. "triangular": linear
  from `TRIANGULAR_START` of the peak up to the peak, then linear down to `TRIANGULAR_END` of it.
  """
  if peak is None:
    peak = config.learning_rate * config.batch_size / 256
  warmup = min(int(config.warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))
  if config.get("lr_schedule", "cosine") == "triangular":
    return optax.join_schedules([
        optax.linear_schedule(TRIANGULAR_START * peak, peak, max(warmup, 1)),
        optax.linear_schedule(peak, TRIANGULAR_END * peak, max(total_steps - warmup, 1)),
    ], boundaries=[warmup])
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=0.0)


def _is_kernel(params):
  # Kernels are the parameters with two or more axes; biases and BatchNorm offsets have one.
  return jax.tree.map(lambda p: p.ndim > 1, params)


def _base_optimizer(config, schedule) -> optax.GradientTransformation:
  if config.optimizer in ("sgd", "sgd_muon"):
    # Weight decay on kernels only, not on biases or BatchNorm scales.
    return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=_is_kernel),
                       optax.sgd(schedule, momentum=config.momentum, nesterov=True))
  if config.optimizer == "adamw":
    return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_is_kernel)
  raise ValueError(f"Unknown config.optimizer={config.optimizer!r}; known: {OPTIMIZERS}.")


# Newton-Schulz sees a conv kernel (HWIO) as the matrix from its k x k x C_in inputs to its C_out
# outputs.
CONV_AS_MATRIX = optax.contrib.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)


def _is_conv_kernel(param) -> bool:
  return param.ndim == 4


def fixed_filter_norm(eps: float = 1e-12) -> optax.GradientTransformation:
  """Rescales each conv kernel to Frobenius norm sqrt(C_out) (filters of norm 1 on average)
  before its update is added, as the speedrun's Muon does: BatchNorm follows every conv, so the
  scale is free, and fixing it keeps each fixed-size Muon step the same relative change."""
  def update_fn(updates, state, params):
    def rescaled(update, param):
      target = jnp.sqrt(jnp.asarray(param.shape[-1], param.dtype))
      return update + param * (target / (jnp.linalg.norm(param) + eps) - 1)
    return jax.tree.map(rescaled, updates, params), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def muon_for_convs(config, schedule) -> optax.GradientTransformation:
  """Muon (momentum orthogonalized by Newton-Schulz; Jordan 2024) on conv kernels of a fixed
  norm, as in the CIFAR-10 speedrun's Muon version (needs optax >= 0.2.7, whose `scale_by_muon`
  adds no shape-dependent factor). `muon_learning_rate` is not scaled by batch size: a step's
  size does not depend on it, but the best rate still does (gradient noise, steps per epoch),
  so choose it per recipe; the speedrun's 0.24 was for batch 2,000."""
  return optax.chain(
      optax.contrib.scale_by_muon(
          beta=config.muon_momentum, nesterov=True,
          weight_dimension_numbers=lambda tree: jax.tree.map(lambda _: CONV_AS_MATRIX, tree)),
      optax.scale_by_learning_rate(schedule),
      fixed_filter_norm())


@dataclasses.dataclass(frozen=True)
class Lookahead:
  """Lookahead with a moving average over the parameters and BatchNorm's running moments.

  Every `every` steps, and at the last one, the slow copy becomes `decay * slow + (1 - decay) *
  current` and the train state is reset to it. `decay` grows as `final_decay * (step /
  total_steps) ** 3`, so the average only starts to smooth once the learning rate falls (the
  CIFAR-10 speedrun's schedule, Jordan 2024). The running moments are averaged with the weights
  (as the speedrun does) because moments measured on the fast weights do not fit the averaged
  ones (re-estimating them after a weights-only run moved its accuracy by +0.7 points; README's
  fast-recipe section). The last step always syncs, so the run ends on the slow copy (the
  speedrun ends on the previous sync's). The slow copy lives in the train state's
  `extra[SLOW_KEY]` (checkpointed with it).
  """
  every: int
  final_decay: float
  total_steps: int

  SLOW_KEY = "lookahead_slow"

  @staticmethod
  def slow_copy(params, batch_stats) -> dict:
    return {"params": params, "batch_stats": batch_stats}

  def start(self, extra: dict, params, batch_stats) -> dict:
    """`extra` with a slow copy that starts from `params` and `batch_stats`."""
    return {**extra, self.SLOW_KEY: self.slow_copy(params, batch_stats)}

  def sync(self, state):
    """`state` after its step (`state.step` already counts it), synced when due."""
    step = state.step
    decay = self.final_decay * (jnp.minimum(step, self.total_steps) / self.total_steps) ** 3
    due = (step % self.every == 0) | (step >= self.total_steps)
    current = self.slow_copy(state.params, state.batch_stats)
    mix = lambda s, c: decay.astype(s.dtype) * s + (1 - decay).astype(s.dtype) * c
    slow = jax.tree.map(lambda s, c: jnp.where(due, mix(s, c), s), state.extra[self.SLOW_KEY],
                        current)
    synced = jax.tree.map(lambda s, c: jnp.where(due, s, c), slow, current)
    return state.replace(params=synced["params"], batch_stats=synced["batch_stats"],
                         extra={**state.extra, self.SLOW_KEY: slow})


def lookahead(config, total_steps: int) -> Lookahead | None:
  """The configured Lookahead, or None when `config.lookahead_every` is 0."""
  every = config.get("lookahead_every", 0)
  return Lookahead(every, config.lookahead_decay, max(total_steps, 1)) if every else None


def create_optimizer(config, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """`config.optimizer` on the schedule; with `bias_lr_scale` != 1, one-axis parameters (biases,
  BatchNorm offsets) step that many times faster, as in the CIFAR-10 speedrun. "sgd_muon" trains
  the conv kernels with `muon_for_convs` on the same schedule shape, peaking at
  `muon_learning_rate`. (Lookahead acts on the train state: `lookahead`.)"""
  schedule = learning_rate_schedule(config, total_steps, steps_per_epoch)
  tx = _base_optimizer(config, schedule)
  scale = config.get("bias_lr_scale", 1.0)
  muon = config.optimizer == "sgd_muon"
  if scale == 1.0 and not muon:
    return tx
  transforms = {"kernel": tx, "bias": optax.chain(tx, optax.scale(scale))}
  if muon:
    transforms["conv"] = muon_for_convs(config, learning_rate_schedule(
        config, total_steps, steps_per_epoch, peak=config.muon_learning_rate))

  def label(param):
    if muon and _is_conv_kernel(param):
      return "conv"
    return "kernel" if param.ndim > 1 else "bias"
  return optax.multi_transform(transforms, lambda params: jax.tree.map(label, params))
