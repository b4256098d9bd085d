"""The train state before the first step of a fresh run: `init_from` loading, U-Net pre-training."""
from __future__ import annotations

import flax
import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from blur_adv import config_checks, data, paths
from blur_adv.checkpoint import Checkpointer
from blur_adv.defense import config as defense_config
from blur_adv.defense.front_end import CLASSIFIER, FRONT_END
from blur_adv.models import unet


def prepare_initial_state(config, state, train_source, rng):
  """Applies `init_from` and U-Net pre-training to a fresh (not resumed) host state."""
  d = defense_config.settings(config)
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
  directory = paths.resolve(workdir) / "checkpoints"  # Local or gs://.
  if not directory.is_dir():
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
  return state.with_new_parameters(params, stats), front_end_loaded


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
  d = defense_config.settings(config)
  count = min(len(train_source), d.unet_pretrain_examples)
  images = data.to_float(train_source.read(np.arange(count))[0])
  _, variables, losses = unet.train_unet(
      jax.random.fold_in(rng, 7), images, steps=d.unet_pretrain_steps,
      batch_size=d.unet_pretrain_batch_size, crop=min(32, images.shape[1], images.shape[2]),
      kernel_size=d.augment_kernel_size, families=tuple(d.augment_families),
      ranges=defense_config.ranges(d),
      features=tuple(d.unet_features))
  logging.info("Pre-trained the U-Net front-end for %d steps: L1 %.4f -> %.4f.",
               d.unet_pretrain_steps, float(losses[0]), float(losses[-1]))
  trained = jax.device_get(variables["params"])
  if jax.process_count() > 1:  # Every host trained it; start all from process 0's copy.
    trained = multihost_utils.broadcast_one_to_all(trained)
  params = flax.core.unfreeze(state.params)
  params[FRONT_END] = trained
  return state.with_new_parameters(params)
