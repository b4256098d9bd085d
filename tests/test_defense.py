"""Defenses from `config.defense`: augmentation, deblurring front-ends, consistency, init_from."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from blur_adv import config_checks, defense, experiment, models, train, trainers
from blur_adv.ops import augment, deblur
from configs import default


def _tiny(**overrides):
  config = default.get_config("runlocal")
  config.trainer = "standard"
  config.num_train_steps = 3
  config.evaluators = ("clean",)
  for field, value in overrides.items():
    *parents, leaf = field.split("__")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def _images(batch=6, size=16, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (batch, size, size, 3))


def test_random_blur_uses_each_examples_own_kernel_and_probability():
  d = defense.default_settings()
  # Jitted (as in training): one compilation per batch shape instead of op-by-op dispatch.
  random_blur = jax.jit(lambda keys, images, p: defense.random_blur(d, keys, images, p))
  first_kernel = jax.jit(lambda key: augment.random_kernels(jax.random.fold_in(key, 0), 1, 7,
                                                            d.augment_families)[0])
  images = _images()
  keys = jax.random.split(jax.random.PRNGKey(1), len(images))
  out = np.asarray(random_blur(keys, images, 1.0))
  for i, key in enumerate(keys):
    kernel = np.asarray(first_kernel(key))
    expected = np.stack([scipy.ndimage.convolve(np.asarray(images[i, ..., c]), kernel[::-1, ::-1],
                                                mode="mirror") for c in range(3)], -1)
    np.testing.assert_allclose(out[i], expected, atol=2e-5)
  # Example i's result depends on its key only, not on the rest of the batch (device count).
  alone = random_blur(keys[2:3], images[2:3], 0.5)
  np.testing.assert_allclose(random_blur(keys, images, 0.5)[2], alone[0], atol=1e-6)
  np.testing.assert_array_equal(random_blur(keys, images, 0.0), images)
  # Probability p blurs about a share p of the examples.
  many = _images(batch=400, size=8)
  keys = jax.random.split(jax.random.PRNGKey(2), len(many))
  changed = np.abs(np.asarray(random_blur(keys, many, 0.3) - many)).max((1, 2, 3)) > 0
  assert 0.22 < changed.mean() < 0.38


def test_noise_augmentation_noises_each_example_by_its_own_key_then_clips():
  config = _tiny(defense__noise_probability=0.5, defense__noise_std=0.1)
  add_noise = jax.jit(lambda keys, images: defense.add_noise(config, keys, images))
  images = 0.25 + 0.5 * _images(batch=400, size=8)  # In [0.25, 0.75]: 0.1-std noise rarely clips.
  keys = jax.random.split(jax.random.PRNGKey(3), len(images))
  delta = np.asarray(add_noise(keys, images) - images)
  noised = np.abs(delta).max((1, 2, 3)) > 0
  assert 0.42 < noised.mean() < 0.58
  assert abs(delta[noised].std() - 0.1) < 0.002 and abs(delta[noised].mean()) < 0.002
  first, second = np.flatnonzero(noised)[:2]
  assert not np.allclose(delta[first], delta[second])  # Each example draws its own noise.
  # Independent of blur augmentation's draw from the same keys (it would be the same mask).
  blurred = np.abs(np.asarray(defense.augment_images(
      _tiny(defense__augment_probability=0.5), keys, images) - images)).max((1, 2, 3)) > 0
  assert 0.4 < (blurred == noised).mean() < 0.6
  # Example i's noise depends on its key only, not on the rest of the batch (device count).
  np.testing.assert_allclose(add_noise(keys[first:first + 1], images[first:first + 1])[0],
                             images[first] + delta[first], atol=1e-6)
  # Clipped to [0, 1] on both ends: about half the noised pixels of a black (white) image.
  for extreme in (0.0, 1.0):
    out = np.asarray(add_noise(keys, jnp.full_like(images, extreme)))
    assert 0.45 < (out[noised] == extreme).mean() < 0.55 and 0 <= out.min() <= out.max() <= 1
    assert (out[~noised] == extreme).all()
  config.defense.noise_probability = 0.0
  assert defense.add_noise(config, keys, images) is images


def test_front_end_model_is_the_classifier_after_deblurring():
  config = _tiny(defense__front_end="wiener")
  config.defense.front_end_options = {"nsr": 0.05}
  model = defense.create_model(config, 10)
  images = _images(batch=2, size=32)
  # Jitted (as in training and attacks): one compilation each instead of op-by-op dispatch.
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
  classifier = models.create_model(config.model, 10, **config.model_kwargs)
  expected = jax.jit(lambda v, x: classifier.apply(
      {"params": v["params"]["classifier"], "batch_stats": v["batch_stats"]["classifier"]},
      deblur.blind_wiener(x, nsr=0.05)))(variables, images)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, images), expected, rtol=1e-5,
                             atol=1e-5)
  # Attacks differentiate through the front-end: gradients w.r.t. the input are finite.
  grad = jax.jit(jax.grad(lambda x: model.apply(variables, x).sum()))(images)
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0


def test_supervised_loss_adds_the_weighted_consistency_term():
  logits = jax.random.normal(jax.random.PRNGKey(0), (8, 5))
  labels = jnp.array([0, 1, 2, 3])
  loss, per_example, first = trainers.supervised_loss(logits, labels, consistency_weight=0.7)
  log_p = np.asarray(jax.nn.log_softmax(logits))
  ce = -log_p[np.arange(8), np.concatenate([labels, labels])]
  p, q = np.exp(log_p[:4]), np.exp(log_p[4:])
  m = (p + q) / 2
  js = 0.5 * (p * np.log(p / m)).sum(-1) + 0.5 * (q * np.log(q / m)).sum(-1)
  np.testing.assert_allclose(loss, ce.mean() + 0.7 * js.mean(), rtol=1e-5)
  np.testing.assert_allclose(per_example, ce[:4], rtol=1e-5)
  np.testing.assert_array_equal(first, logits[:4])
  plain, _, _ = trainers.supervised_loss(logits[:4], labels)
  np.testing.assert_allclose(plain, ce[:4].mean(), rtol=1e-5)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
  """A tiny standard run to fine-tune from."""
  workdir = str(tmp_path_factory.mktemp("source"))
  return train.train_and_evaluate(_tiny(), workdir), workdir


def test_init_from_loads_the_source_classifier_plain_or_behind_a_front_end(source_run, tmp_path):
  source, workdir = source_run
  for front_end in ("none", "unsharp"):
    config = _tiny(defense__init_from=workdir, defense__front_end=front_end,
                   defense__augment_probability=0.5)
    exp = experiment.setup(config, str(tmp_path / front_end))
    state = defense.prepare_initial_state(config, exp.init_state, exp.train_source, exp.train_rng)
    params = state.params if front_end == "none" else state.params["classifier"]
    for a, b in zip(jax.tree.leaves(source.params), jax.tree.leaves(params)):
      np.testing.assert_array_equal(a, b)
    assert int(state.step) == 0
  # The fine-tuning run itself trains from there.
  tuned = train.train_and_evaluate(config, str(tmp_path / "unsharp"))
  assert int(tuned.step) == 3
  # And a plain model takes the classifier back out of a front-ended run.
  plain = _tiny(defense__init_from=str(tmp_path / "unsharp"))
  exp = experiment.setup(plain, str(tmp_path / "plain"))
  state = defense.prepare_initial_state(plain, exp.init_state, exp.train_source, exp.train_rng)
  for a, b in zip(jax.tree.leaves(tuned.params["classifier"]), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)


def test_init_from_a_different_model_or_no_run_names_the_field(source_run, tmp_path):
  _, workdir = source_run
  config = _tiny(defense__init_from=workdir)
  config.model_kwargs = {"width": 4}
  exp = experiment.setup(config, str(tmp_path))
  with pytest.raises(config_checks.ConfigError, match="config.defense.init_from=.*does not match"):
    defense.prepare_initial_state(config, exp.init_state, exp.train_source, exp.train_rng)
  config = _tiny(defense__init_from=str(tmp_path / "no_run"))
  with pytest.raises(config_checks.ConfigError, match="config.defense.init_from=.*no checkpoints"):
    defense.prepare_initial_state(config, exp.init_state, exp.train_source, exp.train_rng)


@pytest.mark.slow
@pytest.mark.parametrize("trainable", [False, True])
def test_unet_front_end_is_pretrained_then_frozen_or_fine_tuned(trainable, tmp_path):
  config = _tiny(defense__front_end="unet", defense__unet_pretrain_steps=3,
                 defense__unet_pretrain_examples=64, defense__unet_features=(4, 8),
                 defense__unet_trainable=trainable)
  exp = experiment.setup(config, str(tmp_path / "probe"))
  pretrained = defense.prepare_initial_state(config, exp.init_state, exp.train_source,
                                             exp.train_rng).params["front_end"]
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(pretrained),
                                              jax.tree.leaves(exp.init_state.params["front_end"]))]
  assert max(moved) > 0  # Pre-training changed the U-Net.
  final = train.train_and_evaluate(config, str(tmp_path / "run")).params["front_end"]
  changed = max(np.abs(a - b).max() for a, b in zip(jax.tree.leaves(final),
                                                   jax.tree.leaves(pretrained)))
  assert (changed > 0) == trainable


@pytest.mark.parametrize("trainer", ["standard", "adversarial"])
def test_consistency_and_augmentation_runs_train(trainer, tmp_path):
  config = _tiny(defense__consistency_weight=1.0, defense__augment_probability=0.5,
                 defense__noise_probability=0.5)
  config.trainer = trainer
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 3
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
  if trainer == "adversarial":  # The adversary's blur moved the attacked rows' predictions.
    final = json.loads((tmp_path / "final_metrics.json").read_text())
    assert 0 < final["train/consistency"] < np.log(2)


@pytest.mark.parametrize("field, value, message", [
    ("augment_probability", 1.5, "config.defense.augment_probability=1.5"),
    ("front_end", "sharpen", "config.defense.front_end='sharpen'"),
    ("augment_families", ("gaussian", "blob"), "unknown family 'blob'"),
    ("augment_kernel_size", 4, "odd int"),
    ("consistency_weight", -1.0, "config.defense.consistency_weight"),
    ("noise_probability", -0.5, "config.defense.noise_probability=-0.5"),
    ("noise_std", -0.1, "config.defense.noise_std=-0.1"),
    ("unet_pretrain_steps", -2, "config.defense.unet_pretrain_steps"),
    ("unet_features", (), "config.defense.unet_features"),
])
def test_bad_defense_settings_are_named(field, value, message):
  config = _tiny(**{f"defense__{field}": value})
  with pytest.raises(config_checks.ConfigError, match=message.replace("(", r"\(").replace(
      "[", r"\[")):
    config_checks.validate(config)


def test_unknown_defense_fields_are_named():
  config = _tiny()
  config.defense.front_ends = "wiener"
  with pytest.raises(config_checks.ConfigError, match="config.defense.front_ends"):
    config_checks.validate(config)
  config = _tiny(defense__front_end="wiener")
  config.defense.front_end_options = {"noise": 0.1}
  with pytest.raises(config_checks.ConfigError, match="config.defense.front_end_options.*noise"):
    config_checks.validate(config)
