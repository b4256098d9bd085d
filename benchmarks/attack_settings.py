"""Which worst-case attack has converged? Worst-case accuracy of one trained classifier on training
images under several attack settings, each against the last (the strongest).

  python benchmarks/attack_settings.py --config=configs/cifar10_fast.py:table \
      --workdir=results/cifar10/table/standard_seed0 --settings=20x2,20x4,100x5

Settings are `STEPSxRESTARTS` of the worst_case evaluator's attack (every family of
`config.robustness`, its kernel size and step size, the evaluator's key) on the classifier
without test-time augmentation (as `:table` evaluates it). The images are
`--examples` training images from `--offset`, never the validation split the table reports, so
the table's attack can be chosen here and checked there (`attack_convergence`). Each row prints
worst-case accuracy over all families and per family, the paired difference to the last row
with a 95% bootstrap interval, and its wall time (not a benchmark: no other load is controlled).
"""
import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

# This checkout's blur_adv, and `configs.*` (the configs import each other) as from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# pylint: disable=g-import-not-at-top,wrong-import-position
from blur_adv import data, experiment
from blur_adv.evaluators import bootstrap, robustness
from blur_adv.models.test_time_augmentation import without_test_time_augmentation
from blur_adv.ops import attacks

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=False)
flags.DEFINE_string("workdir", None, "Run whose last checkpoint is attacked.", required=True)
flags.DEFINE_list("settings", ["20x2", "20x4", "100x5"],
                  "STEPSxRESTARTS per row; the last is the reference.")
flags.DEFINE_integer("examples", 128, "Training images attacked.")
flags.DEFINE_integer("offset", 2000, "Index of the first training image.")
flags.DEFINE_float("budget", 0.1, "SSIM budget.")


def parse_setting(text):
  """'20x4' -> (20, 4), with a one-line error naming the bad value."""
  try:
    steps, restarts = (int(part) for part in text.lower().split("x"))
  except ValueError:
    raise app.UsageError(f"--settings: {text!r} is not STEPSxRESTARTS, e.g. 20x4") from None
  if steps < 0 or restarts < 1:
    raise app.UsageError(f"--settings: {text!r} needs steps >= 0 and restarts >= 1")
  return steps, restarts


def main(argv):
  del argv
  settings = [parse_setting(s) for s in FLAGS.settings]
  config, rob = FLAGS.config, FLAGS.config.robustness
  exp = experiment.setup(config, FLAGS.workdir)
  restored = exp.checkpointer.restore_latest(exp.init_state, exp.train_rng)
  if restored is None:
    raise app.UsageError(f"--workdir: no checkpoint under {FLAGS.workdir}/checkpoints")
  state = restored.state
  images, labels = exp.train_source.read(np.arange(FLAGS.offset, FLAGS.offset + FLAGS.examples))
  images, labels = data.to_float(images), np.asarray(labels)
  logits_fn = attacks.model_logits_fn(without_test_time_augmentation(state.apply_fn),
                                      {"params": state.params, "batch_stats": state.batch_stats})
  key = jax.random.PRNGKey(config.seed + 1)  # the worst_case evaluator's key
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {FLAGS.workdir} step "
        f"{int(state.step)}; training images {FLAGS.offset}..{FLAGS.offset + len(labels) - 1}, "
        f"budget {FLAGS.budget}, step size {rob.attack_step_size}", flush=True)
  rows = []
  for steps, restarts in settings:
    setting = rob.copy_and_resolve_references()  # The evaluator's attack with these counts.
    setting.update(attack_steps=steps, attack_restarts=restarts, budgets=(FLAGS.budget,))
    start = time.time()
    correct = robustness.worst_case_correct(logits_fn, images, labels, setting, key,
                                            batch_size=config.eval_batch_size)
    correct = {k.split("/", 1)[1]: v for k, v in correct.items()}  # "<budget>/<family>" -> family
    rows.append((f"{steps} x {restarts}", correct, time.time() - start))
  reference = rows[-1][1]["all"].astype(np.float64)
  families = [k for k in rows[0][1] if k not in ("all", "clean")]
  print(f"{'attack':>10} {'all':>6} {'- last':>7} {'95% interval':>15} {'s':>6}  "
        + " ".join(f"{f[:9]:>9}" for f in families))
  for name, correct, seconds in rows:
    difference = correct["all"].astype(np.float64) - reference
    interval = bootstrap.with_interval("d", difference)
    print(f"{name:>10} {correct['all'].mean():6.3f} {difference.mean():7.3f} "
          f"[{interval['d/ci95_lo']:6.3f}, {interval['d/ci95_hi']:6.3f}] {seconds:6.0f}  "
          + " ".join(f"{correct[f].mean():9.3f}" for f in families))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
