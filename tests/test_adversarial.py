"""Joint adversarial training and the robustness evaluation, end to end on digits (tiny)."""

import json
import os
import shutil
import types

import jax
import ml_collections
import numpy as np
import pytest

from blur_adv import config_checks, train
from blur_adv.ops import measures as metrics
from blur_adv.evaluate import evaluate_checkpoint
from blur_adv.trainers import adversarial, strength
from configs import default


def _tiny(evaluators=("clean",), **overrides):
  config = default.get_config("runlocal")
  config.evaluators = evaluators
  # The adversary's strength at the end (step 12), with a small reference attack.
  config.adversary.update(strength_every_steps=12, strength_examples=16, strength_attack_steps=2,
                          strength_attack_restarts=1)
  config.adversary.refine_steps = 1  # The network's proposals refined per example.
  for key, value in overrides.items():
    config[key] = value
  return config


def _params(state):
  return jax.tree.leaves((state.params, state.extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny adversarially trained run and its workdir."""
  workdir = str(tmp_path_factory.mktemp("adversarial"))
  state = train.train_and_evaluate(_tiny(), workdir)
  return state, workdir


def test_adversarial_training_logs_the_adversary_and_respects_the_budget(trained):
  state, workdir = trained
  with open(os.path.join(workdir, "final_metrics.json")) as f:
    final = json.load(f)
  config = _tiny()
  assert final["train/adversarial_ssim"] >= 1 - config.budget - 1e-6
  assert final["train/kernel_spread"] > 0 and 0 < final["train/alpha"] <= 1
  assert np.isfinite(final["train/loss_gain"]) and np.isfinite(final["train/fidelity"])
  assert final["train/consistency"] == 0  # consistency_weight 0
  # The strength probe: gains, flip rates and the network's family mixture.
  assert final["adversary/strength"] == pytest.approx(
      final["adversary/loss_gain"] / final["adversary/reference_loss_gain"])
  assert final["adversary/reference_loss_gain"] > 0
  for name in ("flip_rate", "reference_flip_rate", "clean_accuracy"):
    assert 0 <= final[f"adversary/{name}"] <= 1
  mixture = [final[f"adversary/mixture/{f}"] for f in config.adversary.families]
  assert sum(mixture) == pytest.approx(1, abs=1e-5)
  # The adversary learned: its parameters moved away from their initialization.
  fresh = train.experiment_lib.setup(config, workdir + "_fresh").init_state
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(state.extra["adversary_params"]),
                                              jax.tree.leaves(fresh.extra["adversary_params"]))]
  assert max(moved) > 0


def test_interrupted_adversarial_run_resumes_both_networks_exactly(trained, tmp_path):
  """A run that lost its last checkpoint (killed after step 8 of 12) ends where the other did."""
  straight, workdir = trained
  resumed_dir = tmp_path / "resumed"
  shutil.copytree(workdir, resumed_dir)
  shutil.rmtree(resumed_dir / "checkpoints" / "12")
  os.remove(resumed_dir / "final_metrics.json")
  resumed = train.train_and_evaluate(_tiny(), str(resumed_dir))
  assert int(resumed.step) == int(straight.step) == 12
  for a, b in zip(_params(straight), _params(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_robustness_evaluation_writes_results_plots_and_checkable_examples(trained):
  _, workdir = trained
  config = _tiny(evaluators=("clean", "corruptions", "worst_case", "minimal_flip"))
  config.robustness.flip_attack_steps = 1  # The bisection's attack may be cheaper.
  results = evaluate_checkpoint(config, workdir)
  # Each records the attack that made its numbers.
  assert results["worst_case"]["attack_steps"] == config.robustness.attack_steps != 1
  assert results["minimal_flip"]["attack_steps"] == 1
  assert (results["minimal_flip"]["attack_restarts"] == results["worst_case"]["attack_restarts"]
          == config.robustness.attack_restarts)
  for severity in range(1, 6):
    assert 0 <= results["corruptions"][f"gaussian_blur/{severity}"] <= 1
  budgets = config.robustness.budgets
  worst = results["worst_case"]
  for budget in budgets:
    assert worst[f"{budget:g}/all"] <= min(worst[f"{budget:g}/{f}"]
                                           for f in config.robustness.families) + 1e-9
  assert results["minimal_flip"]["q1"] <= results["minimal_flip"]["median"]
  # Every headline number has a 95% bootstrap interval around it.
  headline = [("clean", "accuracy"), ("corruptions", "mean_accuracy"),
              ("corruptions", "clean_accuracy"), ("minimal_flip", "median"),
              ("minimal_flip", "curve_area"), ("minimal_flip", "never_flipped")]
  headline += [("worst_case", f"{b:g}/{f}") for b in budgets
               for f in ("clean", "all") + tuple(config.robustness.families)]
  for evaluator, key in headline:
    out = results[evaluator]
    assert out[f"{key}/ci95_lo"] <= out[key] <= out[f"{key}/ci95_hi"], (evaluator, key)
  for name in ("accuracy_vs_severity.png", "accuracy_vs_budget.png", "kernel_gallery.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000
  saved = np.load(os.path.join(workdir, "adversarial_examples.npz"))
  # Anyone can re-check the budget from the file alone.
  recomputed = np.asarray(metrics.ssim(saved["clean"], saved["adversarial"]))
  np.testing.assert_allclose(recomputed, saved["ssim"], atol=1e-6)
  assert (recomputed >= 1 - saved["budget"]).all()
  assert saved["clean"].min() >= 0 and saved["adversarial"].max() <= 1


def test_strength_summary_against_hand_computed_values():
  logits = np.log(np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))
  labels = np.array([0, 0, 1])  # examples 1 and 2 are correct clean (0 ties: argmax -> 0)
  clean_loss = -np.log([0.5, 0.9, 0.8])
  out = strength.summarize(logits, labels, clean_loss + [0.1, 0.2, 0.3],
                           np.array([True, True, False]), clean_loss + [0.4, 0.4, 0.4],
                           np.array([True, True, True]))
  assert out["adversary/loss_gain"] == pytest.approx(0.2)
  assert out["adversary/reference_loss_gain"] == pytest.approx(0.4)
  assert out["adversary/strength"] == pytest.approx(0.5)
  assert out["adversary/flip_rate"] == pytest.approx(2 / 3)  # of the 3 correct clean
  assert out["adversary/reference_flip_rate"] == 1.0


def test_attack_convergence_compares_the_table_attack_with_a_stronger_one(trained):
  _, workdir = trained
  config = _tiny(evaluators=("attack_convergence",))
  results = evaluate_checkpoint(config, workdir)["attack_convergence"]
  assert results["num_examples"] == config.robustness.convergence_examples
  rob = config.robustness
  assert (results["table/attack_steps"], results["table/attack_restarts"]) == (
      rob.attack_steps, rob.attack_restarts)
  assert (results["strong/attack_steps"], results["strong/attack_restarts"]) == (
      5 * rob.attack_steps, max(5, rob.attack_restarts))
  for budget in config.robustness.budgets:
    table, strong = results[f"{budget:g}/table"], results[f"{budget:g}/strong"]
    # The strong attack's first restart retraces the table attack's steps, then goes further.
    assert strong <= table
    assert results[f"{budget:g}/difference"] == pytest.approx(table - strong)
    assert (results[f"{budget:g}/difference/ci95_lo"] <= table - strong
            <= results[f"{budget:g}/difference/ci95_hi"])
  with open(os.path.join(workdir, "eval.json")) as f:
    assert "attack_convergence" in json.load(f)


def test_strength_is_measured_every_n_steps_and_at_the_end_only_with_an_adversary():
  config = _tiny()
  config.adversary.strength_every_steps = 5
  with_adversary = types.SimpleNamespace(adversary=lambda *args: None)
  due = [s for s in range(1, 13) if strength.due(config, with_adversary, s, s == 12)]
  assert due == [5, 10, 12]
  assert not strength.due(config, types.SimpleNamespace(adversary=None), 10, True)
  config.adversary.strength_every_steps = 0
  assert not strength.due(config, with_adversary, 12, True)


@pytest.mark.parametrize("clean_fraction, per_device", [(0.0, 8), (0.25, 8), (0.5, 8), (0.7, 10)])
def test_attacked_rows_spread_the_share_evenly_on_every_device_layout(clean_fraction, per_device):
  rows = adversarial.attacked_rows(40, clean_fraction)
  assert len(rows) == round(40 * (1 - clean_fraction))
  assert np.all(np.diff(rows) <= int(np.ceil(1 / (1 - clean_fraction))))  # no long clean runs
  # Split over devices whose batch times the share is a whole number, each device attacks the
  # global rows that it holds.
  local = adversarial.attacked_rows(per_device, clean_fraction)
  np.testing.assert_array_equal(
      np.concatenate([d * per_device + local for d in range(40 // per_device)]), rows)


def test_a_clean_fraction_that_attacks_nothing_is_a_config_error():
  config = _tiny()
  config.adversary.clean_fraction = 0.99  # 1% of a batch of 32: no example
  with pytest.raises(config_checks.ConfigError, match=r"config\.adversary\.clean_fraction=0\.99"):
    config_checks.validate(config, num_devices=1)


def test_a_non_boolean_best_iterate_is_a_config_error():
  config = _tiny()
  # ConfigDict's type safety stops `=1` on a flag; a config file can still rebuild the section.
  config.adversary = ml_collections.ConfigDict({**config.adversary.to_dict(),
                                                "refine_best_iterate": "yes"})
  with pytest.raises(config_checks.ConfigError,
                     match=r"config\.adversary\.refine_best_iterate='yes': must be True or False"):
    config_checks.validate(config, num_devices=1)
