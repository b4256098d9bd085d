"""The training loop: `train_and_evaluate(config, workdir)` returns the final state.

Resumes from the newest checkpoint in `workdir`, checks every step's loss
for NaN/inf (one step behind, to keep the device busy), evaluates and saves
periodically, and on SIGTERM saves before returning.
"""
from __future__ import annotations

import signal
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from clu import parameter_overview
from jax.experimental import multihost_utils

from blur_adv import experiment as experiment_lib
from blur_adv import jsonio, paths, writers
from blur_adv.defense import init as defense_init
from blur_adv.evaluators import base as evaluators
from blur_adv.trainers import strength


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; no checkpoint of that state is written."""


class PreemptionWatcher:
  """Says at which step to save and exit after a preemption notice (SIGTERM), the same step on
  every process, without a per-step exchange between hosts.

  With `jax.distributed` initialized, JAX's preemption service owns SIGTERM: a notice on any
  process reaches all of them in the background, and `reached_preemption_sync_point(step)` turns
  true on every process at the same step (the step after the furthest any process has reached);
  until a notice it is a local check. Without `jax.distributed` (one process), a Python SIGTERM
  handler sets a flag read at the next step.
  """

  def __init__(self):
    self._distributed = jax.distributed.is_initialized()
    self._requested = False
    self._previous = None
    if self._distributed:
      if not jax.config.jax_enable_preemption_service:
        raise RuntimeError("Multi-process training needs jax_enable_preemption_service=True "
                           "(JAX's default) to save and exit together on SIGTERM.")
    else:  # Installing a Python handler would replace the preemption service's own.
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def should_stop(self, step: int) -> bool:
    """Whether to save at `step` and exit; call once at every step, in step order."""
    if self._distributed:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _checked(step: int, step_metrics: Any) -> Any:
  values = step_metrics.compute()
  for name in ("loss", "grad_norm"):
    if not np.isfinite(values[name]):
      raise NonFiniteLossError(
          f"Training diverged: {name}={values[name]} at step {step}; stopping without "
          "checkpointing that state. Lower config.learning_rate or check the data.")
  return step_metrics


def _merge(total, new):
  return new if total is None else total.merge(new)


def train_and_evaluate(config, workdir: str) -> Any:
  """Trains `config` in `workdir` (resuming if possible); returns the final host state."""
  start_time = time.time()
  exp = experiment_lib.setup(config, workdir)  # Validates the config first.
  dp = exp.parallel
  is_chief = jax.process_index() == 0
  # TensorBoard events and log lines from process 0 only; other processes stay silent.
  writer = writers.create_writer(str(workdir), is_chief)
  writer.write_hparams({k: v for k, v in config.items() if not hasattr(v, "items")})

  host_state, train_rng, position = exp.init_state, exp.train_rng, 0
  restored = exp.checkpointer.restore_latest(host_state, train_rng)
  if restored is not None:
    host_state, train_rng, position = restored
    logging.info("Resumed from step %d (data position %d).", int(host_state.step), position)
  else:  # A fresh run: fine-tuning source and front-end pre-training (config.defense).
    host_state = defense_init.prepare_initial_state(config, host_state, exp.train_source, train_rng)
  start_step = int(host_state.step)
  parameter_overview.log_parameter_overview(host_state.params)
  logging.info("Training %d steps (%d per epoch) on %d device(s), %s, global batch %d.",
               exp.total_steps, exp.steps_per_epoch, dp.num_devices, dp.mode, config.batch_size)

  state = dp.replicate(host_state)
  train_step = dp.wrap_train_step(exp.trainer.train_step)
  eval_step = dp.wrap_eval_step(exp.trainer.eval_step)
  train_iter = exp.train_iterator(position)
  progress = writers.ProgressReporter(exp.total_steps, writer, config.log_every_steps)
  watcher = PreemptionWatcher()

  def evaluate(step: int) -> dict[str, float]:
    inputs = evaluators.Inputs(config, exp.eval_source, dp, state, eval_step)
    results = {f"{name}/{k}": v for name, out in evaluators.run(config.evaluators, inputs).items()
               for k, v in out.items()}
    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
    return results

  probe = (strength.probe_batch(config, exp.train_source)
           if strength.enabled(config, exp.trainer) else None)
  summary = {"step": start_step}
  train_metrics, pending = None, None  # `pending`: (step, metrics) not yet checked.
  try:
    for step in range(start_step + 1, exp.total_steps + 1):
      batch = dp.shard_batch(next(train_iter))
      step_rng = dp.put_rng(jax.random.fold_in(train_rng, step))
      state, step_metrics = train_step(state, batch, step_rng)
      if pending is not None:  # Check the previous step while this one runs.
        train_metrics = _merge(train_metrics, _checked(pending[0], dp.unreplicate(pending[1])))
      pending = (step, step_metrics)
      if is_chief:
        progress(step)

      is_last = step == exp.total_steps
      preempted = watcher.should_stop(step)
      save = is_last or preempted or step % config.checkpoint_every_steps == 0
      if save or is_last or step % config.log_every_steps == 0:
        train_metrics = _merge(train_metrics, _checked(pending[0], dp.unreplicate(pending[1])))
        pending = None
        train_values = {k: float(v) for k, v in train_metrics.compute().items()}
        writer.write_scalars(step, {f"train/{k}": v for k, v in train_values.items()})
        summary.update(step=step, **{f"train/{k}": v for k, v in train_values.items()})
        train_metrics = None
      if is_last or step % config.eval_every_steps == 0:
        with progress.timed("eval"):
          summary.update(step=step, **{f"eval/{k}": v for k, v in evaluate(step).items()})
      if strength.due(config, exp.trainer, step, is_last):  # The adversary against a reference.
        values = strength.measure(config, exp.trainer, dp.unreplicate(state), *probe)
        writer.write_scalars(step, values)
        summary.update(step=step, **values)
      if save:
        exp.checkpointer.save(step, dp.unreplicate(state), train_rng, train_iter.position)
      if preempted:
        logging.warning("SIGTERM: saved a checkpoint at step %d; exiting.", step)
        summary["preempted"] = True
        break
  finally:
    train_iter.close()  # grain's worker processes, if any.
    exp.checkpointer.wait()
    watcher.restore()
    writer.flush()

  summary_path = paths.resolve(workdir) / "final_metrics.json"
  summary["wall_time_s"] = time.time() - start_time
  if start_step >= exp.total_steps:  # Restarted after completion: re-evaluate only.
    summary.update({f"eval/{k}": v for k, v in evaluate(start_step).items()})
    previous = jsonio.read_json(summary_path)  # Keep the training run's time and train metrics.
    summary = {**previous, **summary,
               "wall_time_s": previous.get("wall_time_s", summary["wall_time_s"])}
  writer.close()
  if is_chief:
    jsonio.write_json(summary_path, summary)
  if "eval/clean/accuracy" in summary and not summary.get("preempted"):
    logging.info("Final eval accuracy %.4f at step %d (%.1f s).",
                 summary["eval/clean/accuracy"], summary["step"], summary["wall_time_s"])
  return dp.unreplicate(state)
