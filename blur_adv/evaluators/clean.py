"""The "clean" evaluator: loss and accuracy on the eval split, data-parallel over all devices."""
from __future__ import annotations

import jax

from blur_adv import data
from blur_adv.evaluators.base import Inputs, register


@register("clean")
def clean_accuracy(section, inputs: Inputs) -> dict[str, float]:
  """Loss and accuracy on the clean eval split, each example counted once."""
  del section
  total = None
  for batch in data.eval_batches(inputs.source, inputs.config.eval_batch_size,
                                 process_index=jax.process_index(),
                                 process_count=jax.process_count()):
    batch_metrics = inputs.batch_metrics(batch)
    total = batch_metrics if total is None else total.merge(batch_metrics)
  return {name: float(value) for name, value in total.compute().items()}
