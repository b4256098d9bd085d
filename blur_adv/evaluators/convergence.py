"""The "attack_convergence" evaluator: has the worst-case table's attack converged?

On the first `robustness.convergence_examples` eval examples, worst-case accuracy over all
families at every budget of `robustness.budgets`, with the table's attack (`attack_steps`,
`attack_restarts`) and with a much stronger one (`STEPS_FACTOR` times the steps, at least
`RESTARTS` restarts, same step size and starts: restart 0 of the strong attack begins where the
table's does). A converged attack gives (nearly) the same accuracy; a large "difference" means
the table's worst-case numbers overstate robustness.

  python -m blur_adv.evaluate --config=... --workdir=DIR \\
      --config.evaluators="('attack_convergence',)"

adds `"attack_convergence": {"<budget>/table": .., "<budget>/strong": .., "<budget>/difference":
.., "<budget>/difference/ci95_lo": .., ..., "table/attack_steps": .., "strong/attack_restarts":
..}` to DIR/eval.json (difference = table - strong, its interval a paired bootstrap over the
same examples).
"""
from __future__ import annotations

import jax
import numpy as np

from blur_adv.evaluators import bootstrap, robustness
from blur_adv.evaluators.base import Inputs, register

STEPS_FACTOR = 5
RESTARTS = 5


def strong_settings(rob):
  """`rob` with the stronger attack's steps and restarts (a copy)."""
  strong = rob.copy_and_resolve_references()
  strong.attack_steps = STEPS_FACTOR * rob.attack_steps
  strong.attack_restarts = max(RESTARTS, rob.attack_restarts)
  return strong


@register("attack_convergence", section="robustness")
def attack_convergence(rob, inputs: Inputs):
  """Worst-case accuracy ("all" families) with the table's and the strong attack, and the gap."""
  images, labels = robustness.examples(rob, inputs)
  images, labels = images[:rob.convergence_examples], labels[:rob.convergence_examples]
  key = jax.random.PRNGKey(inputs.config.seed + 1)  # the worst_case evaluator's key
  attacks = {"table": rob, "strong": strong_settings(rob)}
  correct = {
      name: robustness.worst_case_correct(inputs.predict, images, labels, settings, key,
                                          batch_size=inputs.config.eval_batch_size)
      for name, settings in attacks.items()}
  out = {"num_examples": float(len(labels))}
  for name, settings in attacks.items():  # Which two attacks made the numbers.
    out.update({f"{name}/{k}": v for k, v in robustness.attack_record(settings).items()})
  for budget in rob.budgets:
    table, strong = (correct[name][f"{budget:g}/all"] for name in ("table", "strong"))
    out[f"{budget:g}/table"] = float(np.mean(table))
    out[f"{budget:g}/strong"] = float(np.mean(strong))
    difference = table.astype(np.float64) - strong.astype(np.float64)
    out[f"{budget:g}/difference"] = float(np.mean(difference))
    out.update(bootstrap.with_interval(f"{budget:g}/difference", difference))
  return out
