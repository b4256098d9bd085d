"""The fast CIFAR-10 recipe's parts: patch whitening, test-time augmentation, the triangular
schedule, faster biases, reflect-padded translations, and the config end to end."""
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from blur_adv import components, config_checks, data, optim, parallel  # pylint: disable=unused-import
from conftest import run_python  # pylint: disable=g-import-not-at-top
from blur_adv.models import test_time_augmentation as tta
from blur_adv.models import whitened_net
from blur_adv.trainers import base

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from configs import cifar10_fast  # pylint: disable=g-import-not-at-top,wrong-import-position


def _conv(x, filters):
  return jax.lax.conv_general_dilated(x, filters, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_whitening_filters_decorrelate_patches_to_unit_variance():
  images = jax.random.uniform(jax.random.PRNGKey(0), (16, 12, 12, 3)) ** 2  # Correlated channels.
  filters = whitened_net.patch_whitening_filters(images, eps=0.0)
  assert filters.shape == (2, 2, 3, 24)
  # The first half are the whitening basis, the second half their negations.
  np.testing.assert_allclose(filters[..., 12:], -filters[..., :12])
  features = _conv(images, filters[..., :12]).reshape(-1, 12)
  second_moment = np.asarray(features.T @ features / features.shape[0])
  np.testing.assert_allclose(second_moment, np.eye(12), atol=2e-3)


def test_whitening_is_computed_from_init_images_and_never_trained():
  model = whitened_net.WhitenedConvNet(num_classes=3, widths=(4, 8, 8))
  images = jax.random.uniform(jax.random.PRNGKey(1), (8, 16, 16, 3))
  # Jitted: op by op, the init and the training pass cost ~30 s of dispatch here.
  variables = jax.jit(model.init)(jax.random.PRNGKey(2), images)
  expected = whitened_net.patch_whitening_filters((images - 0.5) / 0.25)
  stored = variables["batch_stats"]["whitening"]
  # Compiled and eager float orders differ; 1/sqrt(eigenvalue) magnifies that to ~2e-5.
  np.testing.assert_allclose(stored, expected, rtol=1e-3, atol=1e-4)
  assert "whitening" not in variables["params"]  # Not a parameter: the optimizer never sees it.
  train_pass = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  _, updates = train_pass(variables, images)
  np.testing.assert_array_equal(updates["batch_stats"]["whitening"], stored)


def test_without_whitening_bias_the_net_is_the_zero_bias_net_and_has_no_such_parameter():
  images = jax.random.uniform(jax.random.PRNGKey(1), (4, 16, 16, 3))
  with_bias = whitened_net.WhitenedConvNet(num_classes=3, widths=(4, 8, 8))
  without = with_bias.clone(whitening_bias=False)
  variables = jax.jit(with_bias.init)(jax.random.PRNGKey(2), images)
  assert not np.any(variables["params"]["whitening_bias"])  # Starts at zero.
  params = {k: v for k, v in variables["params"].items() if k != "whitening_bias"}
  assert set(jax.jit(without.init)(jax.random.PRNGKey(2), images)["params"]) == set(params)
  np.testing.assert_allclose(
      jax.jit(without.apply)({**variables, "params": params}, images),
      jax.jit(with_bias.apply)(variables, images), atol=1e-6)


def test_cpu_devices_split_the_host_before_jax_starts():
  with pytest.raises(config_checks.ConfigError, match="config.cpu_devices=-1"):
    parallel.use_single_threaded_cpu_devices(-1)
  parallel.use_single_threaded_cpu_devices(0)  # XLA's default: nothing to do.
  jax.devices()
  with pytest.raises(RuntimeError, match="before backends are initialized"):
    parallel.use_single_threaded_cpu_devices(2)
  script = ("import os, jax; from blur_adv import parallel; "
            "parallel.use_single_threaded_cpu_devices(2); "
            "print(jax.device_count(), os.environ['XLA_FLAGS'])")
  result = run_python(["-c", script], timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["2", "--xla_cpu_multi_thread_eigen=false"]


def _linear_apply(variables, x, train=False):
  del train
  return x.reshape(x.shape[0], -1) @ variables["w"]


def test_tta_averages_the_views_and_attacks_differentiate_through_it():
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 5, 5, 1))
  variables = {"w": jax.random.normal(jax.random.PRNGKey(1), (25, 3))}
  apply = tta.with_test_time_augmentation(_linear_apply, "flip_translate")
  f = lambda z: _linear_apply(variables, z)
  shifted = [np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")[:, a:a + 5, a:a + 5]
             for a in (0, 2)]  # Shifts by (+1, +1) and (-1, -1).
  manual = 0.25 * f(x) + 0.25 * f(x[:, :, ::-1]) + 0.125 * sum(
      f(s) + f(s[:, :, ::-1]) for s in shifted)
  np.testing.assert_allclose(apply(variables, x), manual, atol=1e-5)
  # Training sees the plain model; "none" is the plain function itself.
  np.testing.assert_allclose(apply(variables, x, train=True), f(x))
  assert tta.with_test_time_augmentation(_linear_apply, "none") is _linear_apply
  # The adversary's strength is measured on the plain model under the wrapper.
  assert tta.without_test_time_augmentation(apply) is _linear_apply
  assert tta.without_test_time_augmentation(_linear_apply) is _linear_apply
  # The gradient of the averaged logits is the average of the views' gradients, not the plain one.
  grad = jax.grad(lambda z: apply(variables, z)[:, 0].sum())(x)
  plain = jax.grad(lambda z: f(z)[:, 0].sum())(x)
  assert not np.allclose(grad, plain)


def test_translate_moves_content_with_reflection():
  x = jnp.arange(25.0).reshape(1, 5, 5, 1)
  moved = np.asarray(tta.translate(x, 1, 1))[0, :, :, 0]
  np.testing.assert_array_equal(moved[1:, 1:], np.asarray(x)[0, :4, :4, 0])
  np.testing.assert_array_equal(moved[0, 1:], np.asarray(x)[0, 1, :4, 0])  # Reflected row.


def _schedule_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      learning_rate=0.4, batch_size=256, warmup_epochs=2.0, lr_schedule="triangular",
      bias_lr_scale=1.0, optimizer="sgd", momentum=0.0, weight_decay=0.0))
  config.update(overrides)
  return config


def test_triangular_schedule_rises_to_the_peak_then_falls_to_its_end_fraction():
  schedule = optim.learning_rate_schedule(_schedule_config(), total_steps=100, steps_per_epoch=10)
  np.testing.assert_allclose(schedule(0), optim.TRIANGULAR_START * 0.4, rtol=1e-6)
  np.testing.assert_allclose(schedule(20), 0.4, rtol=1e-6)  # Peak after warmup_epochs.
  np.testing.assert_allclose(schedule(100), optim.TRIANGULAR_END * 0.4, rtol=1e-6)
  np.testing.assert_allclose(schedule(60), 0.4 + (optim.TRIANGULAR_END * 0.4 - 0.4) * 0.5,
                             rtol=1e-6)


def test_bias_lr_scale_speeds_up_one_axis_parameters_only():
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  grads = jax.tree.map(jnp.ones_like, params)
  updates = {}
  for scale in (1.0, 8.0):
    tx = optim.create_optimizer(_schedule_config(bias_lr_scale=scale, lr_schedule="cosine",
                                                 warmup_epochs=0.0), 10, 10)
    updates[scale], _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates[8.0]["kernel"], updates[1.0]["kernel"])
  np.testing.assert_allclose(updates[8.0]["bias"], 8.0 * updates[1.0]["bias"])


def _newton_schulz5(matrix, steps=5):
  # The speedrun's quintic iteration towards the nearest semi-orthogonal matrix, in float64.
  a, b, c = 3.4445, -4.7750, 2.0315
  x = matrix / (np.linalg.norm(matrix) + 1e-8)
  wide = x.shape[0] <= x.shape[1]
  x = x if wide else x.T
  for _ in range(steps):
    gram = x @ x.T
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x if wide else x.T


def test_sgd_muon_matches_the_speedruns_muon_on_convs_and_keeps_sgd_elsewhere():
  # Reference: Nesterov momentum, the (C_out, k * k * C_in) matrix orthogonalized, the kernel
  # rescaled to norm sqrt(C_out), then stepped, no weight decay (the speedrun's Muon). The
  # momentum is optax's bias-corrected average; the speedrun sums (buffer = m * buffer + g, then
  # g + m * buffer), which has the same direction once m^t is negligible (the orthogonalization
  # drops the scale) and weights the first few steps' gradients differently. The 1x1 kernel has
  # more outputs than inputs, where some optax versions scale Muon's step by the shape.
  rng = np.random.default_rng(0)
  params = {"conv": rng.normal(size=(3, 3, 4, 6)), "project": rng.normal(size=(1, 1, 2, 6)),
            "head": rng.normal(size=(6, 3)), "scale": np.ones(6)}
  params = jax.tree.map(lambda p: p.astype(np.float32), params)
  grads = [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)
           for _ in range(3)]
  settings = dict(muon_learning_rate=0.2, muon_momentum=0.6, lr_schedule="cosine",
                  warmup_epochs=0.0, momentum=0.85, weight_decay=5e-3, bias_lr_scale=8.0,
                  model="whitened_convnet")
  config = _schedule_config(optimizer="sgd_muon", **settings)
  optim.check_config(config)
  tx = optim.create_optimizer(config, total_steps=1000, steps_per_epoch=10)
  # Every other parameter: the updates of optimizer='sgd' (weight decay, momentum, bias rate).
  others = {k: params[k] for k in ("head", "scale")}
  sgd = optim.create_optimizer(_schedule_config(optimizer="sgd", **settings), 1000, 10)
  state, sgd_state = tx.init(params), sgd.init(others)
  schedule = optim.learning_rate_schedule(config, 1000, 10)
  kernels = {k: params[k].astype(np.float64) for k in ("conv", "project")}
  averages, m = {"conv": 0.0, "project": 0.0}, 0.6
  for step, g in enumerate(grads):
    updates, state = tx.update(g, state, params)
    sgd_updates, sgd_state = sgd.update({k: g[k] for k in others}, sgd_state, others)
    params = optax.apply_updates(params, updates)
    others = optax.apply_updates(others, sgd_updates)
    for k in others:
      np.testing.assert_allclose(params[k], others[k], rtol=1e-6)
    t, rate = step + 1, float(schedule(step)) / 0.4 * 0.2  # Muon's peak 0.2 at step 0.
    for k, kernel in kernels.items():
      averages[k] = m * averages[k] + (1 - m) * g[k]
      nesterov = m * averages[k] / (1 - m ** (t + 1)) + (1 - m) * g[k] / (1 - m ** t)
      outputs = kernel.shape[-1]
      kernel = kernel * np.sqrt(outputs) / np.linalg.norm(kernel)
      step_matrix = _newton_schulz5(nesterov.reshape(-1, outputs).T).T
      kernels[k] = kernel - rate * step_matrix.reshape(kernel.shape)
      np.testing.assert_allclose(params[k], kernels[k], atol=2e-5, err_msg=k)
  # Five quintic steps leave singular values near 1 (in [0.68, 1.13]): a step of fixed size.
  singular = np.linalg.svd(_newton_schulz5(rng.normal(size=(6, 36))), compute_uv=False)
  assert singular.min() > 0.6 and singular.max() < 1.2


def test_sgd_muon_settings_are_validated():
  muon = dict(optimizer="sgd_muon", muon_learning_rate=0.2, muon_momentum=0.6,
              model="whitened_convnet")
  for field, value in (("muon_learning_rate", 0.0), ("muon_momentum", 1.0)):
    with pytest.raises(config_checks.ConfigError, match=f"config.{field}={value}"):
      optim.check_config(_schedule_config(**{**muon, field: value}))
  with pytest.raises(config_checks.ConfigError, match="config.optimizer='muon'"):
    optim.check_config(_schedule_config(optimizer="muon"))
  # Fixing filter norms changes a network whose convs are not all followed by BatchNorm.
  with pytest.raises(config_checks.ConfigError, match="config.optimizer='sgd_muon'.*resnet20"):
    optim.check_config(_schedule_config(**{**muon, "model": "resnet20"}))
  unet = ml_collections.ConfigDict({"front_end": "unet", "unet_trainable": True})
  with pytest.raises(config_checks.ConfigError, match="config.optimizer='sgd_muon'.*U-Net"):
    optim.check_config(_schedule_config(**muon, defense=unet))
  with pytest.raises(config_checks.ConfigError, match="needs config.muon_momentum"):
    optim.check_config(_schedule_config(optimizer="sgd_muon", muon_learning_rate=0.2,
                                        model="whitened_convnet"))
  optim.check_config(_schedule_config(**muon))


def test_lookahead_pulls_weights_and_moments_to_their_ramped_average_and_ends_on_it():
  # Constant-rate SGD on the loss |w|^2 / 2 (gradient w), Lookahead every 2 of 5 steps; the
  # "BatchNorm moment" m is set by each step, as a training pass would.
  lookahead = optim.Lookahead(every=2, final_decay=0.8, total_steps=5)
  state = base.TrainState.create(apply_fn=None, params={"w": jnp.array([1.0, -2.0])},
                                 tx=optax.sgd(0.3), batch_stats={"m": jnp.zeros(2)},
                                 extra={"other": jnp.ones(1)}, lookahead=lookahead)
  fast, slow = np.array([1.0, -2.0]), {"w": np.array([1.0, -2.0]), "m": np.zeros(2)}
  step_sync = jax.jit(lambda state, m: state.apply_gradients(grads=state.params,
                                                             batch_stats={"m": m}))
  for step in range(1, 6):
    m = np.array([step, -step], np.float32)
    state = step_sync(state, m)
    fast = fast - 0.3 * fast
    if step % 2 == 0 or step == 5:  # The last step always syncs.
      decay = 0.8 * (step / 5) ** 3
      slow = {"w": decay * slow["w"] + (1 - decay) * fast,
              "m": decay * slow["m"] + (1 - decay) * m}
      fast, m = slow["w"], slow["m"]
    np.testing.assert_allclose(state.params["w"], fast, rtol=1e-6)
    np.testing.assert_allclose(state.batch_stats["m"], m, rtol=1e-6)
  assert int(state.step) == 5
  np.testing.assert_array_equal(state.extra["other"], 1.0)  # Other entries of extra stay.
  # New starting parameters (fine-tuning) restart the slow copy and the optimizer from them.
  restarted = state.with_new_parameters({"w": jnp.array([3.0, 4.0])})
  np.testing.assert_array_equal(restarted.extra[lookahead.SLOW_KEY]["params"]["w"], [3.0, 4.0])
  np.testing.assert_array_equal(restarted.extra[lookahead.SLOW_KEY]["batch_stats"]["m"],
                                state.batch_stats["m"])

  # From the config: off (0, the default) adds nothing to the state, so old checkpoints load.
  config = _schedule_config(lookahead_every=20, lookahead_decay=0.8)
  assert optim.lookahead(config, 100) == optim.Lookahead(20, 0.8, 100)
  assert optim.lookahead(_schedule_config(lookahead_every=0, lookahead_decay=0.8), 100) is None
  plain = base.TrainState.create(apply_fn=None, params={"w": jnp.ones(2)}, tx=optax.sgd(0.1),
                                 batch_stats={})
  assert plain.extra == {} and plain.lookahead is None
  with pytest.raises(config_checks.ConfigError, match="config.lookahead_every=-1"):
    optim.check_lookahead(_schedule_config(lookahead_every=-1, lookahead_decay=0.8))
  with pytest.raises(config_checks.ConfigError, match="config.lookahead_decay=1.0"):
    optim.check_lookahead(_schedule_config(lookahead_every=5, lookahead_decay=1.0))


def test_schedule_and_tta_names_are_validated():
  with pytest.raises(config_checks.ConfigError, match="config.lr_schedule='triangle'"):
    optim.check_schedule(_schedule_config(lr_schedule="triangle"))
  with pytest.raises(config_checks.ConfigError, match="config.bias_lr_scale"):
    optim.check_schedule(_schedule_config(bias_lr_scale=0.0))
  with pytest.raises(config_checks.ConfigError, match="config.tta='flips'"):
    tta.check_config(ml_collections.ConfigDict({"tta": "flips"}))


def test_flip_translate2_is_a_reflect_padded_shift_and_deterministic():
  images = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
  augment = data.AUGMENTATIONS["flip_translate2"].batch
  out = augment(images, np.random.default_rng(1), slice(0, 6), 6)
  again = augment(images, np.random.default_rng(1), slice(0, 6), 6)
  np.testing.assert_array_equal(out, again)
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
  for i in range(6):
    windows = [padded[i, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
    assert any(np.array_equal(out[i], w) or np.array_equal(out[i], w[:, ::-1]) for w in windows)


def test_fast_config_is_valid_and_its_gpu_variant_differs_only_in_scale():
  config_checks.validate(cifar10_fast.get_config("tfds"), num_devices=1)
  gpu = cifar10_fast.get_config("gpu,tfds")
  config_checks.validate(gpu, num_devices=1)
  assert gpu.batch_size == 1024 and gpu.model == "whitened_convnet"
  with pytest.raises(ValueError, match="Unknown config argument"):
    cifar10_fast.get_config("gpus")
  # The recipe's earlier versions (committed rows, the robustness table) keep their settings.
  for arg in ("v1", "v2", "table", "gpu,v1"):
    config = cifar10_fast.get_config(arg)
    assert (config.augment, config.lookahead_every) == ("flip_translate2", 0), arg
  for arg, every in (("", 20), ("gpu", 5)):
    config = cifar10_fast.get_config(arg)
    assert (config.augment, config.lookahead_every) == ("alternating_flip_translate2", every)
