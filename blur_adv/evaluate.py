"""Evaluates the latest checkpoint: `python -m blur_adv.evaluate --config=... --workdir=DIR`.

Runs the evaluators named in `config.evaluators` and writes their results
into `DIR/eval.json` as {"step": ..., "<evaluator>": {...}, ...}, keeping
entries of evaluators not run this time.
"""
from __future__ import annotations

import json
import os
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS


def evaluate_checkpoint(config, workdir: str) -> dict[str, Any]:
  """Restores the newest checkpoint in `workdir`, runs the evaluators, updates eval.json."""
  import jax  # pylint: disable=g-import-not-at-top
  from blur_adv import evaluators, experiment, robustness  # pylint: disable=g-import-not-at-top
  exp = experiment.setup(config, workdir)
  restored = exp.checkpointer.restore_latest(exp.init_state, exp.train_rng)
  if restored is None:
    raise FileNotFoundError(f"No checkpoint under {os.path.join(workdir, 'checkpoints')}.")
  state = exp.parallel.replicate(restored.state)
  eval_step = exp.parallel.wrap_eval_step(exp.trainer.eval_step)
  path = os.path.join(workdir, "eval.json")
  results: dict[str, Any] = {}
  if os.path.exists(path):
    with open(path) as f:
      results = json.load(f)
  results["step"] = int(restored.state.step)
  for name in config.evaluators:
    results[name] = evaluators.EVALUATORS.get(name, field="evaluators")(exp, state, eval_step)
    logging.info("%s at step %d: %s", name, results["step"], results[name])
  if jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    if set(config.evaluators) & set(robustness.EVALUATOR_NAMES):
      for written in robustness.write_artifacts(exp, state, results, workdir):
        logging.info("Wrote %s", written)
  return results


def main(argv):
  del argv
  evaluate_checkpoint(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory holding the run's checkpoints.")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
