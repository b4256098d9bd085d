"""The "clean" evaluator: loss and accuracy on the eval split, data-parallel over all devices."""
from __future__ import annotations

import jax

from blur_adv import data
from blur_adv.evaluators import bootstrap
from blur_adv.evaluators.base import Inputs, register


@register("clean")
def clean_accuracy(section, inputs: Inputs) -> dict[str, float]:
  """Loss and accuracy on the clean eval split, each example counted once, and the accuracy's
  95% bootstrap interval ("accuracy/ci95_lo", "accuracy/ci95_hi")."""
  del section
  total = None
  for batch in data.eval_batches(inputs.source, inputs.config.eval_batch_size,
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count()):
    batch_metrics = inputs.batch_metrics(batch)
    total = batch_metrics if total is None else total.merge(batch_metrics)
  out = {name: float(value) for name, value in total.compute().items()}
  # Totals only (data-parallel over devices and processes): the interval of a proportion needs
  # only its count and mean (see `bootstrap.proportion_values`).
  count = int(round(float(total.accuracy.count)))
  out.update(bootstrap.with_interval(
      "accuracy", bootstrap.proportion_values(out["accuracy"], count)))
  return out
