"""Fail-fast validation of experiment configs: one clear line naming the bad field.

`validate` checks the core fields here and every section or name field through the validator its
owner registered (`register_fields`): `defense/config.py`, `trainers/adversarial.py`,
`evaluators/robustness.py`, `optim.py`, `parallel.py`, and each `Registry` made with a
`field`. `blur_adv/components.py`
imports all of those owners, so import it before validating (`experiment` does).

This module imports no other part of blur_adv but `data` (numpy only), which imports nothing
back: every part may use `ConfigError` and `fail` without an import cycle, and a config file may
import a section's defaults without importing JAX.
"""
from __future__ import annotations

import difflib
import math
import os

from blur_adv import data

# Fields every experiment config defines (see configs/default.py).
CORE_FIELDS = frozenset({
    "seed", "dataset", "data_dir", "train_split", "eval_split", "image_size", "augment",
    "model", "model_kwargs", "trainer", "budget", "parallelism", "num_devices",
    "batch_size", "eval_batch_size", "num_epochs", "num_train_steps", "optimizer",
    "learning_rate", "momentum", "weight_decay", "warmup_epochs", "label_smoothing",
    "log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
    "evaluators", "data_workers", "eval_crop_fraction",
})
_EXTRA_FIELDS: set[str] = set()
_VALIDATORS: list = []


class ConfigError(ValueError):
  """A config field has a bad value."""


def register_fields(*names: str, validator=None):
  """Lets the module that owns a section (e.g. `config.adversary`) or a name field declare it.

  Unknown top-level fields are reported as typos; `validator(config)`, if given, runs in
  `validate` when every one of `names` is in the config (raising `ConfigError` through `fail`).
  """
  _EXTRA_FIELDS.update(names)
  if validator is not None and (names, validator) not in _VALIDATORS:
    _VALIDATORS.append((names, validator))


def known_fields() -> frozenset[str]:
  return CORE_FIELDS | _EXTRA_FIELDS


def fail(field: str, value, why: str):
  """Raises the one-line `ConfigError` naming `config.<field>`, its value and what is wrong."""
  raise ConfigError(f"config.{field}={value!r}: {why}")


def unknown_name(kind: str, field: str | None, name, known) -> ConfigError:
  """The error for a name no registry or list knows, with the closest known one."""
  known = sorted(known)
  close = difflib.get_close_matches(str(name), known, n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  why = f"unknown {kind}{hint}; known: {', '.join(known)}."
  if field is None:
    return ConfigError(f"{kind} {name!r}: {why}")
  return ConfigError(f"config.{field}={name!r}: {why}")


# ------------------------------------------------------------------ checks of one value


def check_int(field: str, value, minimum: int = 1, allow_none: bool = False):
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    fail(field, value, "must be a positive integer." if minimum == 1 else
         f"must be an integer >= {minimum}.")


def check_bool(field: str, value):
  if not isinstance(value, bool):
    fail(field, value, "must be True or False.")


def check_kernel_size(field: str, value):
  if isinstance(value, bool) or not isinstance(value, int) or value < 3 or value % 2 == 0:
    fail(field, value, "must be an odd integer >= 3.")


def check_number(field: str, value, low: float, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False):
  """A finite real number in the interval from `low` to `high` (open ends as flagged)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    fail(field, value, "must be a finite number.")
  if value < low or (low_open and value == low) or value > high or (high_open and value == high):
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    fail(field, value, f"must be in {interval}.")


def check_names(field: str, values, known, kind: str = "name"):
  """A non-empty tuple or list of names from `known`."""
  if isinstance(values, str) or not isinstance(values, (tuple, list)) or not values:
    fail(field, values, f"must be a non-empty tuple of names from {tuple(known)}.")
  for name in values:
    if name not in known:
      raise unknown_name(kind, field, name, known)


def check_keys(section: str, values, known):
  """Every key of the config section `section` is one of `known`."""
  for key in values.keys():
    if key not in known:
      raise _unknown_field(f"{section}.", key, known)


def _unknown_field(prefix: str, field: str, known) -> ConfigError:
  close = difflib.get_close_matches(field, known, n=1)
  hint = f" (did you mean config.{prefix}{close[0]}?)" if close else ""
  return ConfigError(f"Unknown config field config.{prefix}{field}{hint}.")


# ------------------------------------------------------------------ the whole config


def validate(config, num_devices: int | None = None, process_count: int = 1,
             available_devices: int | None = None):
  """Checks names, ranges and divisibility without touching data; run once, before data loads."""
  known = known_fields()
  for field in config.keys():
    if field not in known:
      raise _unknown_field("", field, known)
  missing = sorted(CORE_FIELDS - set(config.keys()))
  if missing:
    raise ConfigError(f"Config lacks field(s) {', '.join('config.' + m for m in missing)}.")

  if config.augment not in data.AUGMENTATIONS:
    raise unknown_name("augmentation", "augment", config.augment, data.AUGMENTATIONS)
  if not isinstance(config.dataset, str) or not config.dataset:
    fail("dataset", config.dataset, "must be 'digits', 'folder:PATH' or a TFDS name.")
  if config.dataset.startswith("folder:") and not os.path.isdir(config.dataset[len("folder:"):]):
    fail("dataset", config.dataset, "no such directory.")
  for field in ("train_split", "eval_split"):
    try:
      data.parse_split(config[field], 100)
    except ValueError:
      fail(field, config[field], "expected e.g. 'train', 'train[:90%]' or 'test[100:]'.")

  if (isinstance(config.budget, bool) or not isinstance(config.budget, (int, float))
      or not 0 < config.budget <= 1):
    fail("budget", config.budget, "the SSIM budget must be a number in (0, 1].")
  for field in ("image_size", "batch_size", "eval_batch_size", "log_every_steps",
                "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    check_int(field, config[field])
  check_int("data_workers", config.data_workers, minimum=0)
  check_number("eval_crop_fraction", config.eval_crop_fraction, 0, 1, low_open=True)
  check_int("num_train_steps", config.num_train_steps, allow_none=True)
  check_int("num_devices", config.num_devices, allow_none=True)
  if config.num_train_steps is None:
    check_number("num_epochs", config.num_epochs, 0, low_open=True)
  check_number("learning_rate", config.learning_rate, 0, low_open=True)
  check_number("momentum", config.momentum, 0, 1)
  check_number("weight_decay", config.weight_decay, 0)
  check_number("warmup_epochs", config.warmup_epochs, 0)
  check_number("label_smoothing", config.label_smoothing, 0, 1, high_open=True)
  _check_devices(config, num_devices, process_count, available_devices)

  for names, validator in _VALIDATORS:
    if all(name in config for name in names):  # Sections are optional where their owner allows.
      validator(config)


def _check_devices(config, num_devices, process_count, available_devices):
  if config.num_devices and available_devices is not None:
    if process_count > 1 and config.num_devices != available_devices:
      fail("num_devices", config.num_devices, "must be unset with several processes.")
    if config.num_devices > available_devices:
      fail("num_devices", config.num_devices, f"but only {available_devices} devices.")
  for field in ("batch_size", "eval_batch_size"):
    if num_devices and config[field] % num_devices:
      fail(field, config[field], f"must be divisible by the {num_devices} devices in use.")
    if config[field] % process_count:
      fail(field, config[field], f"must be divisible by the {process_count} processes.")
