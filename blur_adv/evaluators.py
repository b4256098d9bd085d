"""Evaluators by name (big_vision style); each returns a flat dict of floats for eval.json.

An evaluator is `fn(experiment, state, eval_step) -> dict[str, float]`, where
`state` is the replicated device state and `eval_step` the trainer's eval step
wrapped for the experiment's parallelism. Later issues register robustness
evaluators (blurred accuracy under a budget, attacks) next to `clean`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from blur_adv import data
from blur_adv.registry import Registry

EVALUATORS: Registry[Callable[..., dict[str, float]]] = Registry("evaluator")


@EVALUATORS.register("clean")
def clean_accuracy(experiment: Any, state: Any, eval_step: Callable) -> dict[str, float]:
  """Loss and accuracy on the clean eval split, each example counted once."""
  dp, config = experiment.parallel, experiment.config
  total = None
  for batch in data.eval_batches(experiment.eval_source, config.eval_batch_size,
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count()):
    batch_metrics = dp.unreplicate(eval_step(state, dp.shard_batch(batch)))
    total = batch_metrics if total is None else total.merge(batch_metrics)
  return {name: float(value) for name, value in total.compute().items()}
