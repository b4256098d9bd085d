"""`blur` against scipy.ndimage.convolve, for every strategy, padding and kernel layout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from jax.test_util import check_grads

from blur_adv.ops import blur as blur_lib

STRATEGIES = sorted(blur_lib.STRATEGIES)
PADDINGS = sorted(blur_lib.PADDING_TO_SCIPY_MODE)
ODD_SIZES = list(range(3, 32, 2))


def _scipy_blur(images, kernels, padding):
  """Reference: per-example, per-channel scipy convolution with the matching boundary mode."""
  mode = blur_lib.PADDING_TO_SCIPY_MODE[padding]
  if kernels.ndim == 2:
    kernels = np.broadcast_to(kernels, (images.shape[0],) + kernels.shape)
  return np.stack([
      np.stack([ndi.convolve(image[..., c].astype(np.float64), kernel.astype(np.float64),
                             mode=mode) for c in range(image.shape[-1])], axis=-1)
      for image, kernel in zip(images, kernels)
  ])


def _case(size, per_example, seed=0, batch=3, channels=2):
  rng = np.random.default_rng(seed)
  # Images just large enough for the kernel, with unequal sides to catch transposes.
  height, width = max(size, 6) + 2, max(size, 6) + 5
  images = rng.random((batch, height, width, channels), dtype=np.float32)
  shape = (batch, size, size) if per_example else (size, size)
  kernels = rng.random(shape, dtype=np.float32)  # not symmetric: catches a missing flip
  kernels /= kernels.sum(axis=(-2, -1), keepdims=True)
  return images, kernels


def _check(method, size, per_example, padding):
  images, kernels = _case(size, per_example)
  run = jax.jit(functools.partial(blur_lib.blur, padding=padding, method=method))
  out = run(images, kernels)
  assert out.shape == images.shape and out.dtype == images.dtype
  np.testing.assert_allclose(out, _scipy_blur(images, kernels, padding), atol=2e-5)


@pytest.mark.parametrize("method", STRATEGIES)
@pytest.mark.parametrize("per_example", [False, True])
def test_every_odd_size(method, per_example):
  for size in ODD_SIZES:
    _check(method, size, per_example, "reflect")


@pytest.mark.parametrize("method", STRATEGIES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_every_padding(method, padding):
  for size, per_example in [(3, True), (9, False), (31, True)]:
    _check(method, size, per_example, padding)


def test_auto_matches_scipy_on_all_layouts():
  for size in (3, 5, 15, 31):
    for per_example in (False, True):
      _check("auto", size, per_example, "symmetric")


def test_single_kernel_batch_broadcasts():
  images, kernels = _case(5, per_example=False)
  np.testing.assert_allclose(blur_lib.blur(images, kernels[None]), blur_lib.blur(images, kernels),
                             atol=1e-6)


@pytest.mark.parametrize("method", STRATEGIES)
def test_gradients_wrt_images_and_kernels(method):
  rng = np.random.default_rng(3)
  images = jnp.asarray(rng.random((2, 8, 9, 2)), jnp.float32)
  kernels = jnp.asarray(rng.random((2, 5, 5)), jnp.float32)
  for padding in ("reflect", "constant"):
    fn = lambda x, k: blur_lib.blur(x, k, padding=padding, method=method)
    check_grads(fn, (images, kernels), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-2)
  shared = jnp.asarray(rng.random((3, 3)), jnp.float32)
  check_grads(lambda x, k: blur_lib.blur(x, k, method=method), (images, shared), order=1,
              modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-2)


def test_bfloat16_images_keep_their_dtype():
  images, kernels = _case(5, per_example=True)
  out = blur_lib.blur(jnp.asarray(images, jnp.bfloat16), kernels)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), _scipy_blur(images, kernels, "reflect"),
                             atol=2e-2)


@pytest.mark.parametrize("images, kernels, kwargs, message", [
    (np.zeros((8, 8, 3), np.float32), np.ones((3, 3)), {}, "images must have shape"),
    (np.zeros((1, 8, 8, 3), np.int32), np.ones((3, 3)), {}, "floating point"),
    (np.zeros((2, 8, 8, 3), np.float32), np.ones((3, 3, 3)), {}, "kernel count"),
    (np.zeros((2, 8, 8, 3), np.float32), np.ones((4, 4)), {}, "odd"),
    (np.zeros((2, 8, 8, 3), np.float32), np.ones((3, 5)), {}, "kernels must have shape"),
    (np.zeros((2, 8, 8, 3), np.float32), np.ones((17, 17)), {}, "too large"),
    (np.zeros((2, 8, 8, 3), np.float32), np.ones((3, 3)), {"padding": "mirror"}, "padding"),
    (np.zeros((2, 8, 8, 3), np.float32), np.ones((3, 3)), {"method": "magic"}, "method"),
])
def test_bad_inputs_raise_clear_errors(images, kernels, kwargs, message):
  with pytest.raises(ValueError, match=message):
    blur_lib.blur(images, kernels, **kwargs)
