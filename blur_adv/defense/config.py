"""`config.defense`: its fields, their defaults (every defense off) and their checks.

Plain Python at import (configs read the defaults without importing JAX). The defenses, shared by
every trainer, compose:

- Blur augmentation (`augment_probability` > 0): each training example is blurred, with that
  probability, by a random kernel of `augment_families` at severities `augment_ranges`
  (`augment.default_ranges` when empty). Randomness is keyed per example, so it does not depend
  on the device count. Composes with the adversary (augmentation first, then the attack).
- Gaussian-noise augmentation (`noise_probability` > 0): with that probability a training
  example gets per-pixel Gaussian noise of std `noise_std` (images in [0, 1]), added last, to
  the training batch the classifier sees (after blur augmentation and after the adversary, whose
  SSIM budget is measured on the noise-free image; the consistency loss's second view stays
  noise-free). Not a blur: Gaussian-noise training is a published defense against CIFAR-10-C's
  glass blur (Kireev et al. 2021), whose local pixel swaps no convolution kernel can make.
- Deblurring front-end (`front_end` != "none"): a `front_end.FRONT_ENDS` entry placed before the
  classifier inside the model, so training, evaluation and every attack see it. "unet" is a
  `models.unet.DeblurUNet` whose parameters live in `params["front_end"]`; it is pre-trained on
  blurred/clean crops of the training set for `unet_pretrain_steps` before the classifier's first
  step, then fine-tuned end to end with the classifier when `unet_trainable`, else frozen.
- Blur-consistency loss (`consistency_weight` > 0): with trainer "standard" the batch also goes
  through the model as an always-blurred view, and the loss adds the weighted Jensen-Shannon
  divergence between the predictions on the two views (`trainers.losses.consistency_loss`); with
  trainer "adversarial" the two views are the attacked examples clean and blurred by the adversary.
- Fine-tuning stage (`init_from`): a previous run's workdir whose latest checkpoint initializes
  the classifier (and its BatchNorm statistics); optimizer and step start fresh.
"""
from __future__ import annotations

import ml_collections

from blur_adv import config_checks
from blur_adv.ops import families


def default_settings() -> ml_collections.ConfigDict:
  """`config.defense` with every defense off (configs/default.py documents the fields)."""
  return ml_collections.ConfigDict({
      "augment_probability": 0.0,
      "augment_families": families.DEFAULT_AUGMENT_FAMILIES,
      "augment_kernel_size": 7,
      "augment_ranges": ml_collections.ConfigDict(),  # {family: {param: (low, high)}}
      "noise_probability": 0.0,
      "noise_std": 0.1,
      "front_end": "none",
      "front_end_options": ml_collections.ConfigDict(),  # e.g. {"nsr": 0.02} for "wiener"
      "unet_features": (16, 32, 64),
      "unet_pretrain_steps": 300,
      "unet_pretrain_examples": 2048,
      "unet_pretrain_batch_size": 32,
      "unet_trainable": True,
      "consistency_weight": 0.0,
      "init_from": "",
  })


def settings(config):
  """`config.defense`, or every defense off when a config has no such section."""
  return config.defense if "defense" in config else default_settings()


def ranges(d):
  """`augment_ranges` as `{family: {param: (low, high)}}`, or None for the defaults."""
  return {family: {p: tuple(v) for p, v in params.items()}
          for family, params in d.augment_ranges.items()} or None


def check_config(config):
  """One-line errors for `config.defense` (run by `config_checks.validate`)."""
  # Imported here: both import JAX, which a config file reading the defaults does not need.
  from blur_adv.defense import front_end  # pylint: disable=g-import-not-at-top
  from blur_adv.ops import augment  # pylint: disable=g-import-not-at-top
  d = config.defense
  unknown = sorted(set(d.keys()) - set(default_settings().keys()))
  if unknown:
    config_checks.fail(f"defense.{unknown[0]}", d[unknown[0]], "unknown field; known: "
                       f"{', '.join(sorted(default_settings().keys()))}.")
  fail = lambda field, why: config_checks.fail(f"defense.{field}", d[field], why)
  if not 0.0 <= d.augment_probability <= 1.0:
    fail("augment_probability", "must be in [0, 1].")
  try:
    augment.resolve_ranges(d.augment_kernel_size, tuple(d.augment_families), ranges(d))
  except ValueError as e:
    config_checks.fail("defense.augment_families/augment_kernel_size/augment_ranges",
                       (d.augment_families, d.augment_kernel_size), str(e))
  config_checks.check_number("defense.noise_probability", d.noise_probability, 0.0, 1.0)
  config_checks.check_number("defense.noise_std", d.noise_std, 0.0)
  if d.front_end not in front_end.FRONT_ENDS:
    fail("front_end", f"must be one of {sorted(front_end.FRONT_ENDS)}.")
  options = dict(d.front_end_options)
  try:  # The U-Net's options are unet_* fields; the others take keyword options.
    if d.front_end == "unet":
      if options:
        raise TypeError("front-end 'unet' takes no options (see the unet_* fields)")
    else:
      unknown = sorted(set(options) - front_end.option_names(front_end.FRONT_ENDS[d.front_end]))
      if unknown:
        raise TypeError(f"unknown option(s) {unknown}")
  except TypeError as e:
    fail("front_end_options", f"do not fit front-end {d.front_end!r}: {e}.")
  if d.consistency_weight < 0:
    fail("consistency_weight", "must be >= 0.")
  for field, smallest in (("unet_pretrain_steps", 0), ("unet_pretrain_examples", 1),
                          ("unet_pretrain_batch_size", 1)):
    value = d[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
      fail(field, f"must be an integer >= {smallest}.")
  if not d.unet_features or any(not isinstance(f, int) or f < 1 for f in d.unet_features):
    fail("unet_features", "must be a non-empty tuple of positive ints.")
  # init_from is checked when used (a fresh run), so resuming or evaluating a fine-tuned run
  # does not need its source any more.


config_checks.register_fields("defense", validator=check_config)
