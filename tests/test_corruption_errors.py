"""The corruptions evaluator at 224 px: ImageNet-C table, CE / mCE against AlexNet, by hand.

The evaluator runs here on Gaussian and defocus blur only: glass, motion and zoom blur go through
the same bookkeeping but compile for ~20 s more at 224 px (glass alone ~3.5 s per severity on 2
busy cores); tests/test_corruptions.py checks their pixels against `imagecorruptions`.
"""
import json
import types

import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from blur_adv.evaluators import robustness
from blur_adv.ops import corruptions

# Hendrycks & Dietterich 2019, AlexNet's ImageNet-C errors averaged over severities
# (shared/REFERENCE.md), written out here rather than read from the code under test.
ALEXNET = {"gaussian_blur": 0.787108, "glass_blur": 0.826268, "defocus_blur": 0.819880,
           "motion_blur": 0.785948, "zoom_blur": 0.798360}
ALEXNET_CLEAN = 0.4348
SIZE = 224
EVALUATED = ("gaussian_blur", "defocus_blur")
LEVELS = (0.25, 0.75)  # Example i's mean brightness, kept by every blur: how the model tells them
                       # apart whatever the corruption.


class _Source:
  """Two noisy grey 224x224 images with labels 0 and 1."""
  num_classes = 10

  def __init__(self):
    noise = np.random.default_rng(0).uniform(-0.15, 0.15, (len(LEVELS), SIZE, SIZE, 3))
    self.images = np.uint8(np.round((np.array(LEVELS)[:, None, None, None] + noise) * 255))
    self.labels = np.arange(len(LEVELS), dtype=np.int32)

  def __len__(self):
    return len(self.labels)

  def read(self, indices):
    return self.images[indices], self.labels[indices]


def _model(source):
  """Right on both clean images; on a changed image, right for example 1 only. So every
  corruption and severity has error 1/2 and the clean error is 0."""
  clean = source.images.astype(np.float32) / 255.0

  def logits(images):
    images = np.asarray(images)
    index = np.argmin(np.abs(images.mean(axis=(1, 2, 3))[:, None] - np.array(LEVELS)), axis=1)
    unchanged = np.abs(images - clean[index]).max(axis=(1, 2, 3)) < 1e-4
    predicted = np.where(unchanged | (index == 1), index, 9)
    return jnp.asarray(np.eye(10)[predicted])
  return logits


@pytest.fixture(scope="module")
def evaluated():
  """The evaluator's results with `corruption_table` left to the image size, and the tables
  `corrupt` was called with."""
  source = _Source()
  rob = ConfigDict({"num_examples": 2, "corruption_table": None, "baseline_eval": None})
  inputs = types.SimpleNamespace(source=source, predict=_model(source),
                                 config=ConfigDict({"eval_batch_size": 2, "seed": 0}))
  tables = set()
  corrupt = corruptions.corrupt

  def recording(images, name, severity, *, table=None, **kwargs):
    tables.add(table)
    return corrupt(images, name, severity, table=table, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(corruptions, "CORRUPTIONS", EVALUATED)
    patch.setattr(corruptions, "corrupt", recording)
    return robustness.corruption_accuracy(rob, inputs), tables


def test_224px_images_get_the_imagenet_table_and_alexnet_ce(evaluated):
  results, tables = evaluated
  assert tables == {"imagenet"}
  assert results["clean_accuracy"] == 1.0
  for name in EVALUATED:
    assert [results[f"{name}/{s}"] for s in range(1, 6)] == [0.5] * 5, name
    assert results[f"{name}/ce"] == pytest.approx(0.5 / ALEXNET[name]), name
  # Gaussian: 0.5 / 0.787108 = 0.63524; defocus: 0.5 / 0.819880 = 0.60985.
  assert results["mce"] == pytest.approx((0.63524 + 0.60985) / 2, abs=1e-5)
  # Relative: (0.5 - 0) / (0.787108 - 0.4348) = 1.41921; (0.5 - 0) / (0.819880 - 0.4348) = 1.29843.
  assert results["relative_mce"] == pytest.approx((1.41921 + 1.29843) / 2, abs=1e-5)
  json.dumps(results)  # eval.json takes it as it is.


def test_ce_against_a_baseline_eval_json(tmp_path):
  """A baseline model's eval.json replaces AlexNet: its errors per severity, summed."""
  baseline = {f"{name}/{s}": 1.0 - 0.1 * s for name in ALEXNET for s in range(1, 6)}
  baseline["clean_accuracy"] = 0.9  # errors 0.1..0.5 (sum 1.5); clean error 0.1
  path = tmp_path / "eval.json"
  path.write_text(json.dumps({"corruptions": baseline}))
  errors = {name: [0.3] * 5 for name in ALEXNET}  # sum 1.5
  out = robustness.corruption_errors(errors, 0.0, str(path), "cifar")
  assert out["mce"] == pytest.approx(1.0) and out["gaussian_blur/ce"] == pytest.approx(1.0)
  # Relative: (1.5 - 5 * 0) / (1.5 - 5 * 0.1) = 1.5.
  assert out["relative_mce"] == pytest.approx(1.5)
  assert robustness.corruption_errors(errors, 0.0, None, "cifar") == {}  # No baseline known.
