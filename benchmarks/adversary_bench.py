"""Adversary strength against amortized train-step cost, for every adversary kind, in one run.

  python benchmarks/adversary_bench.py [--config=configs/default.py] [--num_train_steps=N]
      [--kinds=network,pgd,random] [--config.adversary.strength_examples=256]

Each kind trains the config's classifier from the same initialization on the same batches for
the config's number of steps (`--num_train_steps` overrides it), with `trainer="adversarial"` and
`adversary.kind=<kind>`; a standard (clean) run of the same length is the cost peer. Then:

  step ms      mean wall-clock time of a train step, the first `--skip` steps (compilation) left
               out; amortized over `update_every` and anything else that varies between steps
  x standard   that time over the standard step's, measured in this run
  strength     `trainers/strength.py` on the final classifier: the adversary's loss gain on the
               first `adversary.strength_examples` training images over that of the per-example
               attack over all families (`strength_attack_steps` steps, `strength_attack_restarts`
               starts), at `config.budget`; with both gains and both flip rates
  mixture      the network adversary's largest mean family weight on the probe

The kinds run one after the other in this process: on a machine shared with other jobs, their
times move with the load (compare the ratios, rerun on quiet cores for absolute numbers).
"""
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

# This checkout's blur_adv, and `configs.*` (the configs import each other) as from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# pylint: disable=g-import-not-at-top,wrong-import-position
from blur_adv import experiment
from blur_adv.trainers import adversarial, strength
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Experiment config file.",
                                lock_config=False)
flags.DEFINE_integer("num_train_steps", None, "Train steps per kind (default: the config's).")
flags.DEFINE_list("kinds", list(adversarial.KINDS), "Adversary kinds to compare.")
flags.DEFINE_integer("skip", 3, "First steps left out of the timing (compilation).")


def train(config, steps):
  """Trains `steps` steps; returns the final host state, the experiment and seconds per step."""
  exp = experiment.setup(config, tempfile.mkdtemp(prefix="adversary_bench_"))
  dp = exp.parallel
  state = dp.replicate(exp.init_state)
  train_step = dp.wrap_train_step(exp.trainer.train_step)
  batches = exp.train_iterator()
  times = []
  for step in range(1, steps + 1):
    batch = dp.shard_batch(next(batches))
    start = time.perf_counter()
    state, metrics = train_step(state, batch, dp.put_rng(jax.random.fold_in(exp.train_rng, step)))
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  timed = times[FLAGS.skip:] or times
  return dp.unreplicate(state), exp, float(np.mean(timed))


def main(argv):
  del argv
  config = FLAGS.config
  steps = FLAGS.num_train_steps or config.num_train_steps
  if not steps:
    steps = experiment.setup(config, tempfile.mkdtemp()).total_steps
  config.adversary.strength_every_steps = 0  # measured once, below
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; dataset {config.dataset}, model "
        f"{config.model}, batch {config.batch_size}, {steps} steps per kind, budget "
        f"{config.budget}; reference: {len(config.adversary.families)} families x "
        f"{config.adversary.strength_attack_steps} steps x "
        f"{config.adversary.strength_attack_restarts} restarts on "
        f"{config.adversary.strength_examples} training images", flush=True)
  config.trainer = "standard"
  _, _, standard_seconds = train(config, steps)
  print(f"{'kind':>8} {'step ms':>8} {'x standard':>10} {'strength':>8} {'gain':>7} "
        f"{'ref gain':>8} {'flips':>6} {'ref flips':>9} {'mixture':>16}")
  print(f"{'standard':>8} {standard_seconds * 1e3:8.1f} {1.0:10.2f}", flush=True)
  config.trainer = "adversarial"
  for kind in FLAGS.kinds:
    config.adversary.kind = kind
    state, exp, seconds = train(config, steps)
    values = strength.measure(config, exp.trainer, state,
                              *strength.probe_batch(config, exp.train_source))
    mixture = {k.split("/")[-1]: v for k, v in values.items() if "/mixture/" in k}
    top = max(mixture, key=mixture.get) if mixture else None
    print(f"{kind:>8} {seconds * 1e3:8.1f} {seconds / standard_seconds:10.2f} "
          f"{values['adversary/strength']:8.3f} {values['adversary/loss_gain']:7.4f} "
          f"{values['adversary/reference_loss_gain']:8.4f} {values['adversary/flip_rate']:6.3f} "
          f"{values['adversary/reference_flip_rate']:9.3f} "
          f"{f'{top} {mixture[top]:.2f}' if top else '-':>16}", flush=True)


if __name__ == "__main__":
  app.run(main)
