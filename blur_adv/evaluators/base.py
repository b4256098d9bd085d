"""The evaluator interface: by name from `config.evaluators`, each returns a flat dict of floats.

An evaluator is a function `(section, inputs) -> dict[str, float]` registered with `register`:
`section` is its config section (`config.<section>`, or None when it has none) and `inputs` the
`Inputs` of one evaluation: the eval split and the predict functions of the current state. An
evaluator may also name an artifact writer, run once after all evaluators by `write_artifacts`
(by `blur_adv.evaluate`, not during training) with every result, so pictures can combine them.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

from absl import logging

from blur_adv import data
from blur_adv.ops import attacks
from blur_adv.registry import Registry


@dataclasses.dataclass(frozen=True)
class Evaluator:
  run: Callable[[Any, "Inputs"], dict[str, float]]  # (section, inputs) -> numbers
  section: str | None = None  # the config field holding its settings
  # (section, inputs, results of every evaluator run, workdir: an absolute epath.Path, local or
  # gs://) -> paths written
  write_artifacts: Callable[[Any, "Inputs", dict, str], list[str]] | None = None


EVALUATORS: Registry[Evaluator] = Registry("evaluator", field="evaluators", many=True)


def register(name: str, section: str | None = None, write_artifacts=None):
  """Registers the decorated `(section, inputs) -> dict` as evaluator `name`."""
  def decorator(run):
    EVALUATORS.register(name)(Evaluator(run, section, write_artifacts))
    return run
  return decorator


class Inputs:
  """What an evaluator may use of one evaluation of the replicated device `state`."""

  def __init__(self, config, source: data.Source, parallel, state, eval_step: Callable):
    self.config = config  # The whole experiment config (seed, eval_batch_size, budget).
    self.source = source  # The eval split.
    self._parallel, self._state, self._eval_step = parallel, state, eval_step

  def batch_metrics(self, batch):
    """The trainer's eval metrics of one of this process's host batches, over all devices."""
    dp = self._parallel
    return dp.unreplicate(self._eval_step(self._state, dp.shard_batch(batch)))

  @functools.cached_property
  def predict(self) -> Callable:
    """A jitted single-device `images -> logits` of the classifier (eval mode).

    One object per evaluation, with the weights as pytree leaves (`attacks.model_logits_fn`), so
    the attacks compile once for every evaluator that uses it, and once for every checkpoint of
    the same architecture.
    """
    host = self._parallel.unreplicate(self._state)
    variables = {"params": host.params, "batch_stats": host.batch_stats}
    return attacks.model_logits_fn(host.apply_fn, variables)


def _section(evaluator: Evaluator, config):
  return None if evaluator.section is None else config[evaluator.section]


def run(names, inputs: Inputs,
        on_result: Callable[[str, dict], None] | None = None) -> dict[str, dict[str, float]]:
  """Runs the evaluators `names` in order; returns their results by name. `on_result(name,
  result)` is called as each finishes (so a long evaluation can keep what it has)."""
  results = {}
  for name in names:
    evaluator = EVALUATORS.get(name, field="evaluators")
    # Robustness evaluators run for minutes to hours: say when each starts and what it took.
    logging.info("Evaluator %s: started.", name)
    start = time.perf_counter()
    results[name] = evaluator.run(_section(evaluator, inputs.config), inputs)
    logging.info("Evaluator %s: done in %.0f s.", name, time.perf_counter() - start)
    if on_result is not None:
      on_result(name, results[name])
  return results


def write_artifacts(names, inputs: Inputs, results: dict, workdir: str) -> list[str]:
  """Runs each distinct artifact writer of the evaluators `names` once; returns the paths."""
  writers = {}  # writer -> its evaluator's section; several evaluators may share one writer
  for name in names:
    evaluator = EVALUATORS.get(name, field="evaluators")
    if evaluator.write_artifacts is not None:
      writers.setdefault(evaluator.write_artifacts, evaluator)
  paths = []
  for writer, evaluator in writers.items():
    paths += writer(_section(evaluator, inputs.config), inputs, results, workdir)
  return paths
