"""Evaluates the latest checkpoint: `python -m blur_adv.evaluate --config=... --workdir=DIR`.

Runs the evaluators named in `config.evaluators` and writes their results
into `DIR/eval.json` as {"step": ..., "<evaluator>": {...}, ...}, keeping
entries of evaluators not run this time, then the evaluators' artifacts.
eval.json is rewritten (atomically) as each evaluator finishes, so a killed
evaluation keeps the evaluators it finished.
"""
from __future__ import annotations

import sys
from typing import Any

from absl import app, flags, logging

FLAGS = flags.FLAGS


def evaluate_checkpoint(config, workdir: str) -> dict[str, Any]:
  """Restores the newest checkpoint in `workdir`, runs the evaluators, updates eval.json."""
  # pylint: disable=g-import-not-at-top  (flags first, so a bad command line fails at once)
  import jax
  from blur_adv import experiment, jsonio, paths
  from blur_adv.evaluators import base as evaluators
  # pylint: enable=g-import-not-at-top
  exp = experiment.setup_eval(config, workdir)  # Opens config.eval_split only.
  restored = exp.checkpointer.restore_latest(exp.init_state, exp.train_rng)
  if restored is None:
    raise FileNotFoundError(f"No checkpoint under {paths.resolve(workdir) / 'checkpoints'}.")
  state = exp.parallel.replicate(restored.state)
  eval_step = exp.parallel.wrap_eval_step(exp.trainer.eval_step)
  inputs = evaluators.Inputs(config, exp.eval_source, exp.parallel, state, eval_step)
  path = paths.resolve(workdir) / "eval.json"
  results = jsonio.read_json(path)
  results["step"] = int(restored.state.step)

  def keep(name, out):  # Written after every evaluator: a killed evaluation keeps what finished.
    results[name] = out
    logging.info("%s at step %d: %s", name, results["step"], out)
    if jax.process_index() == 0:
      # Merged into the file as it is now, not as it was at the start: another evaluation of
      # this workdir running at the same time (other evaluators) keeps what it wrote meanwhile.
      jsonio.write_json(path, {**jsonio.read_json(path), "step": results["step"], name: out})

  evaluators.run(config.evaluators, inputs, on_result=keep)
  if jax.process_index() == 0:
    for written in evaluators.write_artifacts(config.evaluators, inputs, results,
                                              paths.resolve(workdir)):
      logging.info("Wrote %s", written)
  return results


def main(argv):
  del argv
  from blur_adv import config_checks, data, parallel  # pylint: disable=g-import-not-at-top
  try:
    parallel.use_single_threaded_cpu_devices(FLAGS.config.cpu_devices)
    evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
  except config_checks.ConfigError as e:
    sys.exit(f"Error: {e}")
  except data.DatasetUnavailableError as e:
    data.exit_unavailable(e)


def _define_flags(flag_values=FLAGS, argv=None):
  """The command line's flags, in `flag_values`; `argv` (default sys.argv) is where the config's
  `--config.*` overrides are looked for. Tests parse README's commands with their own pair."""
  from blur_adv import main  # pylint: disable=g-import-not-at-top  (flags only: no JAX)
  main.define_experiment_flags("Directory holding the run's checkpoints (local or gs://).",
                               flag_values, argv)

if __name__ == "__main__":
  _define_flags()
  app.run(main)
