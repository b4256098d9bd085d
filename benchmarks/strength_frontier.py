"""How strong can a per-example refinement make the adversary? Strength of refinement settings on
one trained classifier, against the reference attack and its parts.

  python benchmarks/strength_frontier.py --config=configs/cifar10_fast.py:table \
      --workdir=results/cifar10/table/adversarial_strong_seed0 --config.trainer=adversarial \
      [--config.adversary.strength_examples=128] [--seeds=3]

The classifier (and, for kind "network", the adversary network) is the last checkpoint in
`--workdir`; the probe is the first `adversary.strength_examples` training images, as in
`trainers/strength.py`. Every row re-runs `Trainer.adversary` (what a train step would propose)
with one change to `config.adversary` and prints its `adversary/strength` (loss gain over the
reference attack's), mean and spread over `--seeds` adversary keys, and its flip rate.
`gradients` is the number of classifier gradients per attacked example (`refine_steps`): the
train step's cost above a clean step grows with it (`benchmarks/train_bench.py` measures it).

The reference rows split the reference attack (every family, `strength_attack_steps` steps,
`strength_attack_restarts` starts, best iterate, the worst family per example) into what one
family or one start reaches: how much of the reference's gain comes from taking a maximum over
families x starts, which no single proposal per example gets.

The classifier is fixed here: it was trained against one adversary, so rows measure how far
other searches get against that model, not how they would fare trained jointly.
"""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

# This checkout's blur_adv, and `configs.*` (the configs import each other) as from the root.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# pylint: disable=g-import-not-at-top,wrong-import-position
from blur_adv import experiment, trainers
from blur_adv.models.test_time_augmentation import without_test_time_augmentation
from blur_adv.ops import attacks
from blur_adv.ops import blur as blur_lib
from blur_adv.trainers import strength

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=False)
flags.DEFINE_string("workdir", None, "Run whose last checkpoint is probed.", required=True)
flags.DEFINE_integer("seeds", 3, "Adversary keys per row (spread of the random parts).")

# (row, changes to config.adversary). Steps x linear steps, step size in the attacks' raw units.
VARIANTS = (
    ("network proposal only", {"refine_steps": 0}),
    ("refine 1 x 4, step 0.1 (table)", {}),
    ("refine 1 x 2", {"refine_linear_steps": 2}),
    ("refine 1 x 8", {"refine_linear_steps": 8}),
    ("refine 1 x 4, step 0.05", {"refine_step_size": 0.05}),
    ("refine 1 x 4, step 0.2", {"refine_step_size": 0.2}),
    ("refine 1 x 4, best iterate", {"refine_best_iterate": True}),
    ("random start, refine 1 x 4", {"kind": "random"}),
    ("refine 2 x 2", {"refine_steps": 2, "refine_linear_steps": 2}),
    ("refine 2 x 2, best iterate", {"refine_steps": 2, "refine_linear_steps": 2,
                                    "refine_best_iterate": True}),
    ("refine 2 x 4", {"refine_steps": 2}),
    ("refine 5 x 2, step 0.05", {"refine_steps": 5, "refine_linear_steps": 2,
                                 "refine_step_size": 0.05}),
    ("refine 10 x 1", {"refine_steps": 10, "refine_linear_steps": 1}),
    ("refine 10 x 1, step 0.05", {"refine_steps": 10, "refine_linear_steps": 1,
                                  "refine_step_size": 0.05}),
    ("refine 10 x 1, step 0.05, best iterate", {"refine_steps": 10, "refine_linear_steps": 1,
                                                "refine_step_size": 0.05,
                                                "refine_best_iterate": True}),
)
# Every row starts from the strong table row's setting and changes only what it lists.
BASE = {"refine_steps": 1, "refine_linear_steps": 4, "refine_step_size": 0.1,
        "refine_best_iterate": False}


def _gain(losses, clean_loss):
  return float(np.mean(losses - clean_loss))


def main(argv):
  del argv
  config = FLAGS.config
  adv = config.adversary
  exp = experiment.setup(config, FLAGS.workdir)
  restored = exp.checkpointer.restore_latest(exp.init_state, exp.train_rng)
  if restored is None:
    raise app.UsageError(f"--workdir: no checkpoint under {FLAGS.workdir}/checkpoints")
  state = restored.state
  images, labels = strength.probe_batch(config, exp.train_source)
  logits_fn = attacks.model_logits_fn(without_test_time_augmentation(state.apply_fn),
                                      {"params": state.params, "batch_stats": state.batch_stats})
  clean_logits = logits_fn(images)
  clean_loss = strength._cross_entropy(clean_logits, labels)  # pylint: disable=protected-access
  results = attacks.attack_families(
      logits_fn, images, labels, config.budget,
      jax.random.PRNGKey(config.seed + strength._REFERENCE_SEED),  # pylint: disable=protected-access
      families=tuple(adv.families), size=adv.kernel_size, steps=adv.strength_attack_steps,
      restarts=adv.strength_attack_restarts)
  reference = np.max(np.stack([r.loss for r in results.values()]), axis=0)
  reference_wrong = np.any(np.stack([r.success for r in results.values()]), axis=0)
  reference_gain = _gain(reference, clean_loss)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {FLAGS.workdir} step "
        f"{int(state.step)}; {len(labels)} training images, budget {config.budget}; reference: "
        f"{len(adv.families)} families x {adv.strength_attack_steps} steps x "
        f"{adv.strength_attack_restarts} starts, loss gain {reference_gain:.4f}", flush=True)
  print(f"{'row':44s} {'gradients':>9} {'strength':>8} {'spread':>6} {'flips':>6} {'ref flips':>9}")
  for family, result in results.items():  # One family's attack, best of its starts.
    print(f"{'reference, ' + family + ' only':44s} {adv.strength_attack_steps:9d} "
          f"{_gain(result.loss, clean_loss) / reference_gain:8.3f}", flush=True)
  one_start = attacks.attack_families(
      logits_fn, images, labels, config.budget, jax.random.PRNGKey(config.seed + 6),
      families=("free_form",), size=adv.kernel_size, steps=adv.strength_attack_steps)
  print(f"{'reference, free_form only, one start':44s} {adv.strength_attack_steps:9d} "
        f"{_gain(one_start['free_form'].loss, clean_loss) / reference_gain:8.3f}", flush=True)

  for row, changes in VARIANTS:
    variant = config.copy_and_resolve_references()
    variant.adversary.update({**BASE, **changes})
    trainer = trainers.TRAINERS.get("adversarial")(variant, exp.eval_source.num_classes,
                                                   exp.total_steps, exp.steps_per_epoch)
    propose = jax.jit(trainer.adversary)  # Each row's trainer is a new closure: its own trace.
    values = []
    for seed in range(FLAGS.seeds):
      kernels, _ = propose(state, images, labels, jax.random.PRNGKey(100 + seed))
      attacked = logits_fn(blur_lib.blur(images, kernels))
      values.append(strength.summarize(
          clean_logits, labels, strength._cross_entropy(attacked, labels),  # pylint: disable=protected-access
          np.asarray(jnp.argmax(attacked, -1)) != labels, reference, reference_wrong))
    strengths = [v["adversary/strength"] for v in values]
    print(f"{row:44s} {variant.adversary.refine_steps:9d} {np.mean(strengths):8.3f} "
          f"{np.std(strengths):6.3f} {np.mean([v['adversary/flip_rate'] for v in values]):6.3f} "
          f"{values[0]['adversary/reference_flip_rate']:9.3f}", flush=True)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
