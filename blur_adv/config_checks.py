"""Fail-fast validation of experiment configs: one clear line naming the bad field."""
from __future__ import annotations

import difflib
import os

from blur_adv import data, evaluators, models, optim, parallel

# Fields every experiment config defines (see configs/default.py).
CORE_FIELDS = frozenset({
    "seed", "dataset", "data_dir", "train_split", "eval_split", "image_size", "augment",
    "model", "model_kwargs", "trainer", "budget", "parallelism", "num_devices",
    "batch_size", "eval_batch_size", "num_epochs", "num_train_steps", "optimizer",
    "learning_rate", "momentum", "weight_decay", "warmup_epochs", "label_smoothing",
    "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
    "evaluators",
})
_EXTRA_FIELDS: set[str] = set()
_VALIDATORS: list = []


def register_fields(*names: str, validator=None):
  """Lets a module that registers a trainer or evaluator own extra top-level config fields
  (e.g. `config.adversary`); anything else unknown is reported as a typo. `validator(config)`,
  if given, checks those fields in `validate` (raising `ConfigError` through `fail`)."""
  _EXTRA_FIELDS.update(names)
  if validator is not None and (names, validator) not in _VALIDATORS:
    _VALIDATORS.append((names, validator))


def known_fields() -> frozenset[str]:
  return CORE_FIELDS | _EXTRA_FIELDS


class ConfigError(ValueError):
  """A config field has a bad value."""


def fail(field: str, value, why: str):
  """Raises the one-line `ConfigError` naming `config.<field>`, its value and what is wrong."""
  raise ConfigError(f"config.{field}={value!r}: {why}")


def _positive_int(config, field: str, allow_none: bool = False):
  value = config.get(field)
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    fail(field, value, "must be a positive integer.")


def validate(config, num_devices: int | None = None, process_count: int = 1):
  """Checks names, ranges and divisibility without touching data or devices."""
  # Imported here: trainers import modules that register their fields with this one.
  from blur_adv import trainers  # pylint: disable=g-import-not-at-top
  known = known_fields()
  for field in config.keys():
    if field not in known:
      close = difflib.get_close_matches(field, known, n=1)
      hint = f" (did you mean config.{close[0]}?)" if close else ""
      raise ConfigError(f"Unknown config field config.{field}{hint}.")
  missing = sorted(CORE_FIELDS - set(config.keys()))
  if missing:
    raise ConfigError(f"Config lacks field(s) {', '.join('config.' + m for m in missing)}.")

  if config.model not in models.MODELS:
    fail("model", config.model, f"unknown model; known: {', '.join(models.MODELS.names())}.")
  if config.trainer not in trainers.TRAINERS:
    fail("trainer", config.trainer,
          f"unknown trainer; known: {', '.join(trainers.TRAINERS.names())}.")
  if config.parallelism not in parallel.MODES:
    fail("parallelism", config.parallelism, f"must be one of {parallel.MODES}.")
  if config.optimizer not in optim.OPTIMIZERS:
    fail("optimizer", config.optimizer, f"must be one of {optim.OPTIMIZERS}.")
  if config.augment not in data.AUGMENTATIONS:
    fail("augment", config.augment, f"must be one of {tuple(data.AUGMENTATIONS)}.")
  if not isinstance(config.dataset, str) or not config.dataset:
    fail("dataset", config.dataset, "must be 'digits', 'folder:PATH' or a TFDS name.")
  if config.dataset.startswith("folder:") and not os.path.isdir(config.dataset[len("folder:"):]):
    fail("dataset", config.dataset, "no such directory.")
  for field in ("train_split", "eval_split"):
    try:
      data.parse_split(config[field], 100)
    except ValueError:
      fail(field, config[field], "expected e.g. 'train', 'train[:90%]' or 'test[100:]'.")

  budget = config.budget
  if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
    fail("budget", budget, "the SSIM budget must be a number in (0, 1].")

  for field in ("image_size", "batch_size", "eval_batch_size", "log_every_steps",
                "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _positive_int(config, field)
  _positive_int(config, "num_train_steps", allow_none=True)
  _positive_int(config, "num_devices", allow_none=True)
  if config.num_train_steps is None and not config.num_epochs > 0:
    fail("num_epochs", config.num_epochs, "must be positive when num_train_steps is unset.")
  if config.learning_rate <= 0:
    fail("learning_rate", config.learning_rate, "must be positive.")

  for field in ("batch_size", "eval_batch_size"):
    if num_devices and config[field] % num_devices:
      fail(field, config[field], f"must be divisible by the {num_devices} devices in use.")
    if config[field] % process_count:
      fail(field, config[field], f"must be divisible by the {process_count} processes.")
  if isinstance(config.evaluators, str) or not all(
      name in evaluators.EVALUATORS for name in config.evaluators):
    fail("evaluators", config.evaluators,
          f"must be a tuple of names from {evaluators.EVALUATORS.names()}.")
  for names, validator in _VALIDATORS:
    if all(name in config for name in names):  # Sections are optional where their owner allows.
      validator(config)
