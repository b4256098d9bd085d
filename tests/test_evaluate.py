"""`blur_adv.evaluate` needs only the split it evaluates: a checkpoint trained on one image folder
evaluates on another folder that holds only `test/`; and it keeps every evaluator it finished."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from blur_adv import evaluate, train
from blur_adv.evaluators import base as evaluator_base


def _write_folder(root, splits, per_class, seed=0):
  rng = np.random.default_rng(seed)
  for split in splits:
    for c, name in enumerate(("a", "b", "c")):
      os.makedirs(os.path.join(root, split, name))
      for i in range(per_class[split]):
        # Class-dependent mean brightness plus noise: learnable, not trivially constant.
        pixels = np.clip(rng.normal(60 + 60 * c, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, name, f"{i:03d}.png"))
  return str(root)


def _config(root):
  from configs import cifar10_fast  # pylint: disable=g-import-not-at-top
  config = cifar10_fast.get_config("runlocal")  # whitened_convnet: data-dependent batch_stats
  config.dataset = f"folder:{root}"
  config.train_split, config.eval_split = "train", "test"
  config.image_size = 12
  config.batch_size, config.eval_batch_size = 16, 16
  config.num_train_steps = 3
  config.checkpoint_every_steps = config.eval_every_steps = 3
  config.evaluators = ("clean",)
  return config


def test_evaluate_opens_only_the_eval_split(tmp_path, monkeypatch):
  trained_on = _write_folder(tmp_path / "full", ("train", "test"), {"train": 24, "test": 8})
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config(trained_on), workdir)
  with open(os.path.join(workdir, "final_metrics.json")) as f:
    trained_accuracy = json.load(f)["eval/clean/accuracy"]

  test_only = tmp_path / "test_only"
  shutil.copytree(os.path.join(trained_on, "test"), test_only / "test")
  config = _config(str(test_only))
  results = evaluate.evaluate_checkpoint(config, workdir)
  assert results["step"] == 3
  # The same test images give the same accuracy: the restored whitening statistics are the
  # trained ones, not ones re-initialized from the eval images.
  assert results["clean"]["accuracy"] == pytest.approx(trained_accuracy, abs=1e-6)
  assert results["clean"]["accuracy/ci95_lo"] <= results["clean"]["accuracy"]

  # eval.json is written as each evaluator finishes: one that fails later loses nothing.
  def fail(section, inputs):
    del section, inputs
    raise RuntimeError("killed")
  registered = evaluator_base.EVALUATORS._entries  # pylint: disable=protected-access
  monkeypatch.setitem(registered, "fails", evaluator_base.Evaluator(fail))
  os.remove(os.path.join(workdir, "eval.json"))
  config.evaluators = ("clean", "fails")
  with pytest.raises(RuntimeError, match="killed"):
    evaluate.evaluate_checkpoint(config, workdir)
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["clean"] == results["clean"]

  # What another evaluation of the workdir writes while this one runs is kept, not overwritten
  # with the file as this one read it at its start.
  def concurrent(section, inputs):
    del section, inputs
    with open(os.path.join(workdir, "eval.json")) as f:
      written = json.load(f)
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump({**written, "other": {"accuracy": 0.5}}, f)
    return {"done": 1.0}
  monkeypatch.setitem(registered, "concurrent", evaluator_base.Evaluator(concurrent))
  config.evaluators = ("concurrent", "clean")
  evaluate.evaluate_checkpoint(config, workdir)
  with open(os.path.join(workdir, "eval.json")) as f:
    merged = json.load(f)
  assert merged["other"] == {"accuracy": 0.5} and merged["concurrent"] == {"done": 1.0}
  assert merged["clean"] == results["clean"]
  config.evaluators = ("clean",)

  # Training on the test-only folder still names the missing split.
  with pytest.raises(ValueError, match="Unknown split 'train'"):
    train.train_and_evaluate(config, str(tmp_path / "other"))
