"""Builds what training and evaluation share from a config: devices, data, trainer, state."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from blur_adv import components  # pylint: disable=unused-import  (registers every part by name)
from blur_adv import config_checks, data, parallel, paths
from blur_adv.checkpoint import Checkpointer
from blur_adv.trainers import base as trainers


# Training images a model is initialized on.
INIT_SAMPLE = 1024


@dataclasses.dataclass
class Experiment:
  config: Any
  parallel: parallel.DataParallel
  train_source: data.Source | None  # None when set up for evaluation only (`setup_eval`).
  eval_source: data.Source
  trainer: trainers.Trainer
  total_steps: int
  steps_per_epoch: int
  init_state: Any  # Host (numpy) state before training.
  train_rng: np.ndarray  # Base key; step k uses fold_in(train_rng, k).
  checkpointer: Checkpointer

  def train_iterator(self, position: int = 0) -> data.TrainIterator:
    return data.TrainIterator(
        self.train_source, self.config.batch_size, self.config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        augment=self.config.augment, position=position, workers=self.config.data_workers)


def validate(config):
  """`config_checks.validate` against this process's devices: seconds, before any data."""
  available = jax.device_count()
  config_checks.validate(config, num_devices=config.num_devices or available,
                         process_count=jax.process_count(), available_devices=available)


def init_images(source: data.Source) -> np.ndarray:
  """The first `INIT_SAMPLE` images of `source`'s fixed order: what a model's data-dependent
  statistics (e.g. a whitening layer) are initialized from, the same on every process."""
  return data.to_float(source.read(np.arange(min(len(source), INIT_SAMPLE)))[0])


def _open(config, split: str) -> data.Source:
  return data.load_source(config.dataset, split, config.image_size, config.data_dir,
                          config.eval_crop_fraction)


def _build(config, workdir, dp, train_source, eval_source, init_source, total_steps,
           steps_per_epoch) -> Experiment:
  trainer = trainers.TRAINERS.get(config.trainer, field="trainer")(
      config, eval_source.num_classes, total_steps, steps_per_epoch)
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  init_state = jax.device_get(jax.jit(trainer.init_state)(init_rng, init_images(init_source)))
  return Experiment(
      config=config, parallel=dp, train_source=train_source, eval_source=eval_source,
      trainer=trainer, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
      init_state=init_state, train_rng=np.asarray(train_rng),
      checkpointer=Checkpointer(paths.resolve(workdir) / "checkpoints",
                                max_to_keep=config.keep_checkpoints))


def setup(config, workdir: str) -> Experiment:
  """Validates `config` (once, first), then opens data and initializes the state."""
  validate(config)
  dp = parallel.DataParallel(config.parallelism, config.num_devices)
  train_source = _open(config, config.train_split)
  eval_source = _open(config, config.eval_split)
  if len(train_source) < config.batch_size:
    raise config_checks.ConfigError(
        f"config.batch_size={config.batch_size} exceeds the {len(train_source)} examples of "
        f"config.train_split={config.train_split!r}.")
  if train_source.num_classes != eval_source.num_classes:
    raise config_checks.ConfigError(
        f"config.eval_split={config.eval_split!r} has {eval_source.num_classes} classes, "
        f"config.train_split={config.train_split!r} {train_source.num_classes}.")
  steps_per_epoch = len(train_source) // config.batch_size
  total_steps = config.num_train_steps or max(1, int(config.num_epochs * steps_per_epoch))
  return _build(config, workdir, dp, train_source, eval_source, train_source, total_steps,
                steps_per_epoch)


def setup_eval(config, workdir: str) -> Experiment:
  """`setup` for evaluating a checkpoint: opens only `config.eval_split`.

  The state is a template the checkpoint overwrites, so only its structure and shapes matter:
  it is initialized on eval images (data-dependent statistics such as a whitening layer's are
  restored from the checkpoint's `batch_stats`), and the optimizer's schedule, which nothing
  here steps, is built for `config.num_train_steps or 1` steps of an epoch of one step (the
  optimizer state's structure does not depend on them). `train_source` is None.
  """
  validate(config)
  dp = parallel.DataParallel(config.parallelism, config.num_devices)
  eval_source = _open(config, config.eval_split)
  return _build(config, workdir, dp, None, eval_source, eval_source,
                total_steps=config.num_train_steps or 1, steps_per_epoch=1)
