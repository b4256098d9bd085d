"""Joint adversarial training and the robustness evaluation, end to end on digits (tiny)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from blur_adv import train
from blur_adv.ops import measures as metrics
from blur_adv.evaluate import evaluate_checkpoint
from configs import default


def _tiny(evaluators=("clean",), **overrides):
  config = default.get_config("runlocal")
  config.evaluators = evaluators
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
  results = evaluate_checkpoint(config, workdir)
  for severity in range(1, 6):
    assert 0 <= results["corruptions"][f"gaussian_blur/{severity}"] <= 1
  budgets = config.robustness.budgets
  worst = results["worst_case"]
  for budget in budgets:
    assert worst[f"{budget:g}/all"] <= min(worst[f"{budget:g}/{f}"]
                                           for f in config.robustness.families) + 1e-9
  assert results["minimal_flip"]["q1"] <= results["minimal_flip"]["median"]
  for name in ("accuracy_vs_severity.png", "accuracy_vs_budget.png", "kernel_gallery.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000
  saved = np.load(os.path.join(workdir, "adversarial_examples.npz"))
  # Anyone can re-check the budget from the file alone.
  recomputed = np.asarray(metrics.ssim(saved["clean"], saved["adversarial"]))
  np.testing.assert_allclose(recomputed, saved["ssim"], atol=1e-6)
  assert (recomputed >= 1 - saved["budget"]).all()
  assert saved["clean"].min() >= 0 and saved["adversarial"].max() <= 1
