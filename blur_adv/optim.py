"""Optimizer and learning-rate schedule from the config."""
from __future__ import annotations

import jax
import optax

from blur_adv import config_checks

# Training optimizers by `config.optimizer` (the attacks' step rules are `attacks.STEP_RULES`).
OPTIMIZERS = ("sgd", "adamw")


def check_config(config):
  if config.optimizer not in OPTIMIZERS:
    raise config_checks.unknown_name("optimizer", "optimizer", config.optimizer, OPTIMIZERS)


config_checks.register_fields("optimizer", validator=check_config)


def learning_rate_schedule(config, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up then cosine decay to zero, with the peak scaled by batch size / 256."""
  peak = config.learning_rate * config.batch_size / 256
  warmup = min(int(config.warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=0.0)


def _decay_mask(params):
  # Weight decay on kernels only, not on biases or BatchNorm scales.
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(config, total_steps, steps_per_epoch)
  if config.optimizer == "sgd":
    opt = optax.sgd(schedule, momentum=config.momentum, nesterov=True)
  elif config.optimizer == "adamw":
    return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decay_mask)
  else:
    raise ValueError(f"Unknown config.optimizer={config.optimizer!r}; known: sgd, adamw.")
  return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=_decay_mask), opt)
