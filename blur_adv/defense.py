"""Defenses selected by `config.defense`, shared by every trainer; all off by default.

- Blur augmentation (`augment_probability` > 0): each training example is blurred, with that
  probability, by a random kernel of `augment_families` at severities `augment_ranges`
  (`augment.default_ranges` when empty). Randomness is keyed per example, so it does not depend
  on the device count. Composes with the adversary (augmentation first, then the attack).
- Deblurring front-end (`front_end` != "none"): a `deblur.FRONT_ENDS` entry placed before the
  classifier inside the model, so training, evaluation and every attack see it. "unet" is a
  `deblur.DeblurUNet` whose parameters live in `params["front_end"]`; it is pre-trained on
  blurred/clean crops of the training set for `unet_pretrain_steps` before the classifier's first
  step, then fine-tuned end to end with the classifier when `unet_trainable`, else frozen.
- Blur-consistency loss (`consistency_weight` > 0, trainer "standard"): the batch also goes
  through the model as an always-blurred view, and the loss adds the weighted Jensen-Shannon
  divergence between the predictions on the two views (`deblur.consistency_loss`).
- Fine-tuning stage (`init_from`): a previous run's workdir whose latest checkpoint initializes
  the classifier (and its BatchNorm statistics); optimizer and step start fresh.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from blur_adv import augment as augment_lib
from blur_adv import blur as blur_lib
from blur_adv import config_checks, data, deblur, models, optim
from blur_adv import kernels as kernels_lib
from blur_adv.checkpoint import Checkpointer
from blur_adv.parallel import DATA_AXIS

FRONT_END = "front_end"  # Name of the front-end's parameter subtree.
CLASSIFIER = "classifier"


def default_settings() -> ml_collections.ConfigDict:
  """`config.defense` with every defense off (configs/default.py documents the fields)."""
  return ml_collections.ConfigDict({
      "augment_probability": 0.0,
      "augment_families": augment_lib.DEFAULT_FAMILIES,
      "augment_kernel_size": 7,
      "augment_ranges": ml_collections.ConfigDict(),  # {family: {param: (low, high)}}
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


def check_config(config):
  """One-line errors for `config.defense` (run by `config_checks.validate`)."""
  d = config.defense
  unknown = sorted(set(d.keys()) - set(default_settings().keys()))
  if unknown:
    config_checks.fail(f"defense.{unknown[0]}", d[unknown[0]], "unknown field; known: "
                       f"{', '.join(sorted(default_settings().keys()))}.")
  fail = lambda field, why: config_checks.fail(f"defense.{field}", d[field], why)
  if not 0.0 <= d.augment_probability <= 1.0:
    fail("augment_probability", "must be in [0, 1].")
  try:
    augment_lib.resolve_ranges(d.augment_kernel_size, tuple(d.augment_families), _ranges(d))
  except ValueError as e:
    config_checks.fail("defense.augment_families/augment_kernel_size/augment_ranges",
                       (d.augment_families, d.augment_kernel_size), str(e))
  if d.front_end not in deblur.FRONT_ENDS:
    fail("front_end", f"must be one of {sorted(deblur.FRONT_ENDS)}.")
  options = dict(d.front_end_options)
  try:  # The U-Net's options are unet_* fields; the others take keyword options.
    if d.front_end == "unet":
      if options:
        raise TypeError("front-end 'unet' takes no options (see the unet_* fields)")
    else:
      unknown = sorted(set(options) - _option_names(deblur.FRONT_ENDS[d.front_end]))
      if unknown:
        raise TypeError(f"unknown option(s) {unknown}")
  except TypeError as e:
    fail("front_end_options", f"do not fit front-end {d.front_end!r}: {e}.")
  if d.consistency_weight < 0:
    fail("consistency_weight", "must be >= 0.")
  if d.consistency_weight > 0 and config.trainer != "standard":
    fail("consistency_weight", f"is supported by trainer 'standard' only, not {config.trainer!r}.")
  for field, smallest in (("unet_pretrain_steps", 0), ("unet_pretrain_examples", 1),
                          ("unet_pretrain_batch_size", 1)):
    value = d[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
      fail(field, f"must be an integer >= {smallest}.")
  if not d.unet_features or any(not isinstance(f, int) or f < 1 for f in d.unet_features):
    fail("unet_features", "must be a non-empty tuple of positive ints.")
  # init_from is checked when used (a fresh run), so resuming or evaluating a fine-tuned run
  # does not need its source any more.


def _option_names(front_end) -> set[str]:
  """Keyword options of a front-end; blind ones forward `**estimate_options` to the estimator."""
  names = set()
  for name, parameter in inspect.signature(front_end).parameters.items():
    if parameter.kind == parameter.VAR_KEYWORD:
      names |= _option_names(deblur.estimate_gaussian_sigma)
    elif name != "images":
      names.add(name)
  return names


def _ranges(d):
  return {family: {p: tuple(v) for p, v in params.items()}
          for family, params in d.augment_ranges.items()} or None


config_checks.register_fields("defense", validator=check_config)


# ------------------------------------------------------------------------------------ model


class DefendedClassifier(nn.Module):
  """`classifier(front_end(images))`; the front-end is a fixed function or a DeblurUNet."""
  classifier: nn.Module
  front_end: str
  front_end_options: tuple[tuple[str, Any], ...] = ()
  unet_features: tuple[int, ...] = (16, 32, 64)

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.front_end == "unet":
      restored = deblur.DeblurUNet(features=self.unet_features, name=FRONT_END)(images)
      images = jnp.clip(restored, 0.0, 1.0)
    else:
      images = deblur.get_front_end(self.front_end, **dict(self.front_end_options))(images)
    return self.classifier(images, train=train)


def create_model(config, num_classes: int) -> nn.Module:
  """The configured classifier, behind the configured front-end (if any)."""
  classifier = models.create_model(config.model, num_classes, bn_axis_name=DATA_AXIS,
                                   **config.model_kwargs)
  d = settings(config)
  if d.front_end == "none":
    return classifier
  return DefendedClassifier(classifier, d.front_end, tuple(sorted(d.front_end_options.items())),
                            tuple(d.unet_features))


def create_optimizer(config, total_steps: int, steps_per_epoch: int):
  """The classifier's optimizer; a frozen U-Net front-end gets zero updates."""
  tx = optim.create_optimizer(config, total_steps, steps_per_epoch)
  d = settings(config)
  if d.front_end != "unet" or d.unet_trainable:
    return tx
  label = lambda params: {k: ("frozen" if k == FRONT_END else "trained") for k in params}
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, label)


# ----------------------------------------------------------------------------- train-time


def example_keys(rng, local_batch):
  """One key per example, from its index in the global batch.

  Per-example randomness then does not depend on how the batch is split over devices and
  processes, so 1 device, 8 devices and 2 hosts train identically. Call inside a data-parallel
  step (it reads the device's index on the data axis).
  """
  first = jax.lax.axis_index(DATA_AXIS) * local_batch
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(first + jnp.arange(local_batch))


def random_blur(d, keys, images, probability):
  """Blurs example i with probability `probability` by a random kernel drawn from `keys[i]`."""
  size, families = d.augment_kernel_size, tuple(d.augment_families)
  kernels = jax.vmap(lambda k: augment_lib.random_kernels(
      jax.random.fold_in(k, 0), 1, size, families, _ranges(d))[0])(keys)
  apply = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1)))(keys) < probability
  kernels = jnp.where(apply[:, None, None], kernels, kernels_lib.identity(size))
  return blur_lib.blur(images, kernels)


def augment_images(config, keys, images):
  """Blur augmentation of a training batch (identity when `augment_probability` is 0)."""
  d = settings(config)
  if d.augment_probability <= 0:
    return images
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 101))(keys)  # Apart from other users of keys.
  return random_blur(d, keys, images, d.augment_probability)


def blurred_view(config, keys, images):
  """The always-blurred second view of the consistency loss."""
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 102))(keys)
  return random_blur(settings(config), keys, images, 1.0)


# ------------------------------------------------------------------------- before training


def prepare_initial_state(config, state, train_source, rng):
  """Applies `init_from` and U-Net pre-training to a fresh (not resumed) host state."""
  d = settings(config)
  front_end_loaded = False
  if d.init_from:
    state, front_end_loaded = _load_classifier(d.init_from, state, d.front_end != "none")
  if d.front_end == "unet" and d.unet_pretrain_steps > 0 and not front_end_loaded:
    state = _pretrain_unet(config, state, train_source, rng)
  return state


def _load_classifier(workdir, state, wrapped: bool):
  """`state` with the classifier (and a same-kind U-Net, if any) of `workdir`'s latest checkpoint.

  Plain and front-ended runs mix freely: only the classifier's subtree must match. Returns the
  state and whether a trained U-Net front-end came along.
  """
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    config_checks.fail("defense.init_from", workdir,
                       "has no checkpoints/ directory (expected a finished run's workdir).")
  checkpointer = Checkpointer(directory)
  try:
    raw = checkpointer.restore_latest_raw()
  finally:
    checkpointer.close()
  if raw is None:
    config_checks.fail("defense.init_from", workdir, "holds no checkpoint.")
  source = raw["train_state"]
  classifier_part = lambda tree: tree[CLASSIFIER] if CLASSIFIER in tree else tree
  source_params, source_stats = source["params"], source.get("batch_stats") or {}
  params = flax.core.unfreeze(state.params)
  stats = flax.core.unfreeze(state.batch_stats)
  front_end_loaded = False
  if wrapped:
    params[CLASSIFIER] = _restore_tree(params[CLASSIFIER], classifier_part(source_params), workdir)
    stats[CLASSIFIER] = _restore_tree(stats[CLASSIFIER], classifier_part(source_stats), workdir)
    if FRONT_END in params and FRONT_END in source_params:
      params[FRONT_END] = _restore_tree(params[FRONT_END], source_params[FRONT_END], workdir)
      front_end_loaded = True
  else:
    params = _restore_tree(params, classifier_part(source_params), workdir)
    stats = _restore_tree(stats, classifier_part(source_stats), workdir)
  logging.info("Initialized the classifier%s from %s (step %d).",
               " and U-Net" if front_end_loaded else "", workdir, int(source["step"]))
  return state.replace(params=params, batch_stats=stats), front_end_loaded


def _restore_tree(target, value, workdir):
  try:
    restored = flax.serialization.from_state_dict(target, value)
  except (ValueError, KeyError) as e:
    config_checks.fail("defense.init_from", workdir, f"its model does not match: {e}")
  for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(restored)):
    if np.shape(a) != np.shape(b):
      config_checks.fail("defense.init_from", workdir,
                         f"its model does not match: shape {np.shape(b)} vs {np.shape(a)}.")
  return restored


def _pretrain_unet(config, state, train_source, rng):
  """Trains the U-Net front-end on blurred/clean crops of (a sample of) the training set."""
  d = settings(config)
  count = min(len(train_source), d.unet_pretrain_examples)
  images = data.to_float(train_source.read(np.arange(count))[0])
  _, variables, losses = deblur.train_unet(
      jax.random.fold_in(rng, 7), images, steps=d.unet_pretrain_steps,
      batch_size=d.unet_pretrain_batch_size, crop=min(32, images.shape[1], images.shape[2]),
      kernel_size=d.augment_kernel_size, families=tuple(d.augment_families), ranges=_ranges(d),
      features=tuple(d.unet_features))
  logging.info("Pre-trained the U-Net front-end for %d steps: L1 %.4f -> %.4f.",
               d.unet_pretrain_steps, float(losses[0]), float(losses[-1]))
  trained = jax.device_get(variables["params"])
  if jax.process_count() > 1:  # Every host trained it; start all from process 0's copy.
    trained = multihost_utils.broadcast_one_to_all(trained)
  params = flax.core.unfreeze(state.params)
  params[FRONT_END] = trained
  return state.replace(params=params)
