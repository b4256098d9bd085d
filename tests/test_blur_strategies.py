"""Strategy-specific checks of `blur`: separable factors, custom JVPs, the `auto` rule.

(`tests/test_blur.py` checks every strategy against scipy on dense kernels.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import blur_strategies
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import native as native_lib

STRATEGIES = sorted(blur_lib.STRATEGIES)


def _images(batch=3, height=13, width=16, channels=2, seed=0):
  return np.random.default_rng(seed).random((batch, height, width, channels), dtype=np.float32)


def _outer(column, row):
  return np.asarray(column)[..., :, None] * np.asarray(row)[..., None, :]


@pytest.mark.parametrize("factors, dense", [
    (lambda: kernels_lib.gaussian_factors(7, jnp.array([0.0, 0.8, 2.5])),
     lambda: kernels_lib.gaussian(7, jnp.array([0.0, 0.8, 2.5]))),
    (lambda: kernels_lib.box_factors(9, jnp.array([1.0, 2.5, 6.0])),
     lambda: kernels_lib.box(9, jnp.array([1.0, 2.5, 6.0]))),
    (lambda: kernels_lib.axis_aligned_gaussian_factors(
        11, jnp.array([0.5, 3.0, 1.0]), jnp.array([2.0, 0.7, 1.0])),
     lambda: kernels_lib.anisotropic_gaussian(
         11, jnp.array([0.5, 3.0, 1.0]), jnp.array([2.0, 0.7, 1.0]), 0.0)),
])
def test_factors_multiply_to_the_family_kernel(factors, dense):
  column, row = factors()
  assert column.shape == row.shape == (3, dense().shape[-1])
  np.testing.assert_allclose(_outer(column, row), dense(), atol=1e-6)
  np.testing.assert_allclose(np.sum(column, -1), 1.0, atol=1e-6)


@pytest.mark.parametrize("method", STRATEGIES + ["auto"])
@pytest.mark.parametrize("size", [3, 9, 13])
@pytest.mark.parametrize("padding", ["reflect", "constant", "wrap"])
def test_separable_input_matches_dense_kernel(method, size, padding):
  images = _images()
  column, row = kernels_lib.axis_aligned_gaussian_factors(size, jnp.array([0.5, 1.5, 3.0]), 2.0)
  expected = blur_lib.blur(images, _outer(column, row), padding=padding, method="direct")
  separable = blur_lib.blur(images, blur_lib.Separable(column, row), padding=padding,
                            method=method)
  np.testing.assert_allclose(separable, expected, atol=2e-5)
  shared = blur_lib.blur_separable(images, column[1], row[1], padding=padding, method=method)
  expected_shared = blur_lib.blur(images, _outer(column[1], row[1]), padding=padding,
                                  method="direct")
  np.testing.assert_allclose(shared, expected_shared, atol=2e-5)


def test_mixed_shared_and_per_example_factors_broadcast():
  images = _images()
  column = kernels_lib.gaussian_factors(5, jnp.array([0.5, 1.0, 2.0]))[0]
  row = kernels_lib.gaussian_factors(5, 1.0)[1]
  out = blur_lib.blur_separable(images, column, row)
  np.testing.assert_allclose(out, blur_lib.blur(images, _outer(column, row)), atol=2e-5)


@pytest.mark.parametrize("method", STRATEGIES)
def test_gradients_wrt_factors_and_images(method):
  images = jnp.asarray(_images(batch=2, height=8, width=9))
  rng = np.random.default_rng(1)
  column = jnp.asarray(rng.random((2, 5)), jnp.float32)
  row = jnp.asarray(rng.random((5,)), jnp.float32)
  fn = lambda x, c, r: blur_lib.blur(x, blur_lib.Separable(c, r), padding="symmetric",
                                     method=method)
  check_grads(fn, (images, column, row), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-2)


@pytest.mark.parametrize("method", ["shift", "separable"])
def test_custom_jvp_supports_forward_mode_and_second_order(method):
  rng = np.random.default_rng(2)
  images = jnp.asarray(rng.random((2, 7, 8, 1)), jnp.float32)
  kernels = jnp.asarray(rng.random((2, 3, 3)), jnp.float32)
  fn = lambda x, k: blur_lib.blur(x, k, padding="edge", method=method)
  check_grads(fn, (images, kernels), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2,
              eps=1e-2)


@pytest.mark.parametrize("method", STRATEGIES)
def test_kernel_gradient_matches_direct(method):
  """The FFT-based kernel gradients equal autodiff of the plain grouped convolution."""
  images = jnp.asarray(_images(batch=2, height=11, width=12, channels=3))
  kernels = jnp.asarray(np.random.default_rng(4).random((2, 7, 7)), jnp.float32)
  weights = jnp.asarray(np.random.default_rng(5).standard_normal(images.shape), jnp.float32)
  loss = lambda k, x, m: jnp.sum(blur_lib.blur(x, k, method=m) * weights)
  expected = jax.grad(loss, argnums=(0, 1))(kernels, images, "direct")
  actual = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(kernels, images, method)
  for a, e in zip(actual, expected):
    np.testing.assert_allclose(a, e, atol=2e-4)


@pytest.mark.parametrize("method", STRATEGIES)
def test_bfloat16_keeps_dtype_for_separable_input(method):
  images = _images()
  column, row = kernels_lib.gaussian_factors(5, 1.2)
  out = blur_lib.blur_separable(jnp.asarray(images, jnp.bfloat16), column, row, method=method)
  assert out.dtype == jnp.bfloat16
  expected = blur_lib.blur(images, _outer(column, row), method="direct")
  np.testing.assert_allclose(np.asarray(out, np.float32), expected, atol=2e-2)


def test_auto_rule(monkeypatch):
  image = (256, 32, 32, 3)
  assert native_lib.available(), native_lib.unavailable_reason()  # the test machine has a C++ compiler
  assert blur_lib.choose_method(image, (256, 5, 5)) == "native"
  assert blur_lib.choose_method(image, (256, 15, 15)) == "native"
  assert blur_lib.choose_method(image, (31, 31)) == "native"
  assert blur_lib.choose_method(image, (41, 41)) == "fft"
  assert blur_lib.choose_method(image, (256, 31, 31), separable=True) == "native"
  assert blur_lib.choose_method(image, (256, 41, 41), separable=True) == "separable"
  monkeypatch.setattr(native_lib, "_load", lambda: "disabled by BLUR_ADV_NATIVE=0")
  assert blur_lib.choose_method(image, (256, 5, 5)) == "shift"
  assert blur_lib.choose_method(image, (256, 9, 9)) == "fft"
  assert blur_lib.choose_method(image, (256, 15, 15)) == "fft"
  assert blur_lib.choose_method(image, (256, 31, 31), separable=True) == "separable"
  with pytest.raises(ValueError, match="method 'native' is unavailable: disabled"):
    blur_lib.blur(_images(), np.ones((3, 3), np.float32), method="native")


def test_native_unavailable_without_a_working_compiler(monkeypatch, tmp_path):
  monkeypatch.setenv("BLUR_ADV_CACHE", str(tmp_path))
  monkeypatch.setenv("CXX", "no-such-compiler")
  assert "no C++ compiler 'no-such-compiler'" in native_lib._load.__wrapped__()
  monkeypatch.setenv("CXX", "false")  # exists, but fails to build
  assert "failed" in native_lib._load.__wrapped__()
  assert not list(tmp_path.iterdir())  # no half-written library left behind
  monkeypatch.setenv("BLUR_ADV_NATIVE", "0")
  assert native_lib._load.__wrapped__() == "disabled by BLUR_ADV_NATIVE=0"


def test_native_under_vmap_and_for_large_kernels():
  """vmap adds leading axes (examples to the C++ side); k > NATIVE_TAPS_MAX_SIZE takes the FFT
  kernel gradient inside the native VJP."""
  rng = np.random.default_rng(6)
  images = jnp.asarray(rng.random((2, 3, 10, 11, 2)), jnp.float32)
  kernels = jnp.asarray(rng.random((2, 3, 5, 5)), jnp.float32)
  vmapped = jax.vmap(lambda x, k: blur_lib.blur(x, k, method="native"))(images, kernels)
  looped = [blur_lib.blur(x, k, method="direct") for x, k in zip(images, kernels)]
  np.testing.assert_allclose(vmapped, np.stack(looped), atol=1e-5)
  size = blur_strategies.NATIVE_TAPS_MAX_SIZE + 2
  images = jnp.asarray(_images(batch=2, height=size, width=size + 1))
  kernels = jnp.asarray(rng.random((2, size, size)), jnp.float32)
  weights = jnp.asarray(rng.standard_normal(images.shape), jnp.float32)
  loss = lambda k, x, m: jnp.sum(blur_lib.blur(x, k, padding="wrap", method=m) * weights)
  expected = jax.grad(loss, argnums=(0, 1))(kernels, images, "direct")
  actual = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(kernels, images, "native")
  for a, e in zip(actual, expected):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-3)
  column, row = (jnp.asarray(rng.random(shape), jnp.float32) for shape in ((2, size), (size,)))
  loss = lambda c, r, m: jnp.sum(blur_lib.blur_separable(images, c, r, method=m) * weights)
  expected = jax.grad(loss, argnums=(0, 1))(column, row, "separable")
  actual = jax.grad(loss, argnums=(0, 1))(column, row, "native")
  for a, e in zip(actual, expected):
    assert a.shape == e.shape
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-3)


def test_fast_fft_lengths():
  assert [blur_strategies.fast_fft_length(n) for n in (36, 46, 62, 238, 254)] == [
      36, 48, 64, 240, 256]


@pytest.mark.parametrize("column, row, message", [
    (np.ones((2, 5)), np.ones((2, 3)), "same k"),
    (np.ones((1, 2, 5)), np.ones(5), "Separable factors must have shapes"),
    (np.ones(4), np.ones(4), "odd"),
    (np.ones((3, 5)), np.ones(5), "kernel count"),
    (np.ones(17), np.ones(17), "too large"),
])
def test_bad_factors_raise_clear_errors(column, row, message):
  with pytest.raises(ValueError, match=message):
    blur_lib.blur_separable(np.zeros((2, 8, 8, 3), np.float32), column, row)


@pytest.mark.parametrize("separable", [False, True])
def test_native_fused_padding_gradients_match_direct_for_every_padding(separable):
  """`blur` pads inside the loops for "native"; its image gradient is the pad's transpose."""
  rng = np.random.default_rng(7)
  images = jnp.asarray(rng.random((2, 10, 11, 2)), jnp.float32)
  weights = jnp.asarray(rng.standard_normal(images.shape), jnp.float32)
  size = blur_strategies.NATIVE_SEPARABLE_MAX_DENSE_SIZE + 2  # separable: the two-pass path
  if separable:
    kernels = blur_lib.Separable(*(jnp.asarray(rng.random((2, size)), jnp.float32)
                                   for _ in range(2)))
  else:
    kernels = jnp.asarray(rng.random((2, 5, 5)), jnp.float32)
  for padding in blur_lib.PADDING_TO_SCIPY_MODE:
    loss = lambda x, k, m: jnp.sum(blur_lib.blur(x, k, padding=padding, method=m) * weights)
    expected = jax.grad(loss, argnums=(0, 1))(images, kernels, "direct")
    actual = jax.grad(loss, argnums=(0, 1))(images, kernels, "native")
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-4, err_msg=padding)


def test_native_padded_input_strategy_matches_direct():
  """`STRATEGIES["native"]` (padded input, what strategy-level callers use) and its gradients."""
  rng = np.random.default_rng(8)
  padded = jnp.asarray(rng.random((2, 12, 13, 2)), jnp.float32)
  weights = jnp.asarray(rng.standard_normal((2, 8, 9, 2)), jnp.float32)
  for kernels in (jnp.asarray(rng.random((2, 5, 5)), jnp.float32),
                  blur_lib.Separable(*(jnp.asarray(rng.random((2, 5)), jnp.float32)
                                       for _ in range(2)))):
    loss = lambda p, k, m: jnp.sum(blur_lib.STRATEGIES[m](p, k) * weights)
    expected = jax.grad(loss, argnums=(0, 1))(padded, kernels, "direct")
    actual = jax.grad(loss, argnums=(0, 1))(padded, kernels, "native")
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-4)
