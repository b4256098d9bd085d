"""Seconds per 1,000 images of the robustness evaluators, before and after the fast path.

Run (a checkpoint in WORKDIR, e.g. from `python -m blur_adv.main --config=configs/cifar10_cpu.py
--workdir=/tmp/c10cpu --config.num_epochs=0.3`):

  python benchmarks/eval_bench.py --config=configs/cifar10_cpu.py --workdir=/tmp/c10cpu \
      --num_examples=250 [--breakdown] [--config.robustness.budgets=...]

For `worst_case` and `minimal_flip` on the first `num_examples` eval images, each path runs the
evaluator's numbers from scratch, compilation included (caches are cleared first: an evaluation is
a one-off process, so its compiles are part of its cost):

  before     each family's whole search one traced program (steps in a `fori_loop`), SSIM
             recomputed at every bisection step (`budget.direct_ssim`), the whole set as one
             batch: what the evaluators did until issue 14.
  after      the steps driven from Python around one compiled step, shared by every family,
             budget and flip probe (XLA:CPU runs the step 5-6x slower inside a loop); SSIM of
             the blend from local moments filtered once per step (`measures.ssim_along_blend`);
             chunks of `config.eval_batch_size`: what the evaluators do now.
  --breakdown adds the steps in between (host loop; + moments; + chunks).

Paths run one after the other in this process, so their ratio holds on a loaded machine too;
the printed differences check that they compute the same numbers.
"""

import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from blur_adv import experiment
from blur_adv.evaluators import base as evaluators
from blur_adv.evaluators import robustness
from blur_adv.ops import budget

# The configs import each other as `configs.*`, as under `python -m blur_adv.main` from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory holding a checkpoint of the config's model.")
flags.DEFINE_integer("num_examples", 250, "Eval images attacked by each path.")
flags.DEFINE_list("evaluators", ["worst_case", "minimal_flip"], "Which evaluators to time.")
flags.DEFINE_bool("breakdown", False, "Also time the intermediate paths.")
config_flags.DEFINE_config_file("config", "configs/cifar10_cpu.py", "Experiment config file.",
                                lock_config=False)


def paths(batch_size, breakdown):
  """name -> the evaluators' `speed` options of that path."""
  before = dict(batch_size=None, one_program=False, host_loop=False, ssim_fn=budget.direct_ssim)
  middle = {"host loop": dict(batch_size=None, one_program=False, ssim_fn=budget.direct_ssim),
            "+moments": dict(batch_size=None, one_program=False),
            "+chunks": dict(batch_size=batch_size, one_program=False)}
  after = dict(batch_size=batch_size, one_program=True, host_loop=True)
  return {"before": before, **(middle if breakdown else {}), "after": after}


def run_evaluator(name, predict, images, labels, rob, seed, speed):
  """The evaluator's per-example numbers: worst-case accuracies, or minimal flip budgets."""
  if name == "worst_case":
    return robustness.worst_case_accuracies(predict, images, labels, rob,
                                            jax.random.PRNGKey(seed + 1), **speed)
  overall, _ = robustness.minimal_flip_budgets(predict, images, labels, rob,
                                               jax.random.PRNGKey(seed + 2), **speed)
  return overall


def difference(a, b):
  """Largest absolute difference of two results (dicts of floats or arrays with inf)."""
  if isinstance(a, dict):
    return max(abs(a[k] - b[k]) for k in a)
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if np.any(np.isinf(a) != np.isinf(b)):  # flipped on one path only
    return float("inf")
  finite = ~np.isinf(a)  # never flipped on both: the same answer
  return float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))


def main(argv):
  del argv
  config = FLAGS.config
  exp = experiment.setup_eval(config, FLAGS.workdir)
  restored = exp.checkpointer.restore_latest(exp.init_state, exp.train_rng)
  if restored is None:
    sys.exit(f"No checkpoint under {FLAGS.workdir}; train one first (see the docstring).")
  state = exp.parallel.replicate(restored.state)
  inputs = evaluators.Inputs(config, exp.eval_source, exp.parallel, state, None)
  rob = config.robustness
  rob.num_examples = FLAGS.num_examples
  images, labels = robustness.examples(rob, inputs)
  per_1000 = 1000.0 / len(images)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {len(images)} images "
        f"{images.shape[1:]}, model {config.model}, families {len(rob.families)}, budgets "
        f"{tuple(rob.budgets)}, attack steps {rob.attack_steps}, flip search steps "
        f"{rob.flip_search_steps}, eval_batch_size {config.eval_batch_size}; seconds per 1,000 "
        "images, compilation included")
  for name in FLAGS.evaluators:
    results, seconds = {}, {}
    for path, speed in paths(config.eval_batch_size, FLAGS.breakdown).items():
      jax.clear_caches()
      start = time.perf_counter()
      results[path] = run_evaluator(name, inputs.predict, images, labels, rob, config.seed, speed)
      seconds[path] = time.perf_counter() - start
      print(f"{name:>12} {path:>15}: {seconds[path] * per_1000:8.1f} s / 1,000 images "
            f"(before / this = {seconds['before'] / seconds[path]:.2f}x; max difference from "
            f"before {difference(results['before'], results[path]):.2g})", flush=True)
    if name == "worst_case":
      print(f"{name:>12} accuracies after: {results['after']}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
