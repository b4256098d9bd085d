"""Blur measures against scikit-image, TensorFlow and dm-pix, on real photos."""

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage
import skimage.data
import skimage.measure
import skimage.metrics
import skimage.transform
from jax.test_util import check_grads

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels, measures as metrics

SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)


@pytest.fixture(scope="module")
def photos():
  """Three bundled photos, 96x96 RGB in [0, 1]."""
  loaded = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
  return np.stack([
      skimage.transform.resize(skimage.img_as_float(p), (96, 96), anti_aliasing=True)
      for p in loaded]).astype(np.float32)


@pytest.fixture(scope="module")
def blurred(photos):
  """Each photo under Gaussian blur of every sigma in SIGMAS: (len(SIGMAS), 3, 96, 96, 3)."""
  return np.stack([np.asarray(blur_lib.blur(photos, kernels.gaussian(19, s))) for s in SIGMAS])


def _skimage_ssim(a, b):
  return skimage.metrics.structural_similarity(
      a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
      channel_axis=-1)


def test_ssim_matches_skimage_and_dm_pix(photos, blurred):
  for degraded in (blurred[1], blurred[4], np.clip(photos + 0.05, 0, 1)):
    ours = np.asarray(metrics.ssim(photos, degraded))
    reference = [_skimage_ssim(a, b) for a, b in zip(photos, degraded)]
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    np.testing.assert_allclose(ours, dm_pix.ssim(photos, degraded), atol=1e-4)
  np.testing.assert_allclose(metrics.ssim(photos, photos), 1.0, atol=1e-6)


def test_ssim_max_val_scales_the_constants(photos, blurred):
  np.testing.assert_allclose(metrics.ssim(255 * photos, 255 * blurred[2], max_val=255.0),
                             metrics.ssim(photos, blurred[2]), atol=1e-5)


def test_ms_ssim_matches_tensorflow():
  tf = pytest.importorskip("tensorflow")
  photo = skimage.img_as_float(skimage.data.astronaut())[:181, :203].astype(np.float32)
  batch = photo[None]
  degraded = np.asarray(blur_lib.blur(batch, kernels.gaussian(9, 1.2)))
  noisy = np.clip(batch + np.random.default_rng(0).normal(0, 0.05, batch.shape), 0, 1)
  for other in (degraded, noisy.astype(np.float32)):
    reference = tf.image.ssim_multiscale(batch, other, max_val=1.0).numpy()
    np.testing.assert_allclose(metrics.ms_ssim(batch, other), reference, atol=1e-4)
  small = photo[:64, :64][None]
  three_scales = dict(weights=metrics.MS_SSIM_WEIGHTS[:3], window=7)
  reference = tf.image.ssim_multiscale(small, small * 0.9, 1.0, power_factors=(0.3, 0.3, 0.4),
                                       filter_size=7).numpy()
  ours = metrics.ms_ssim(small, small * 0.9, weights=(0.3, 0.3, 0.4), window=7)
  np.testing.assert_allclose(ours, reference, atol=1e-4)
  with pytest.raises(ValueError, match="at least 176x176"):
    metrics.ms_ssim(small, small)
  assert metrics.ms_ssim(small, small, **three_scales).shape == (1,)


def test_psnr_matches_skimage(photos, blurred):
  reference = [skimage.metrics.peak_signal_noise_ratio(a, b, data_range=1)
               for a, b in zip(photos, blurred[2])]
  np.testing.assert_allclose(metrics.psnr(photos, blurred[2]), reference, rtol=1e-5)


def test_blur_effect_matches_skimage(photos, blurred):
  for images in (photos, blurred[1], blurred[4]):
    reference = [skimage.measure.blur_effect(image, channel_axis=-1) for image in images]
    np.testing.assert_allclose(metrics.blur_effect(images), reference, atol=1e-3)
  gray = photos[..., :1]
  reference = [skimage.measure.blur_effect(image[..., 0]) for image in gray]
  np.testing.assert_allclose(metrics.blur_effect(gray), reference, atol=1e-3)


@pytest.mark.parametrize("name", sorted(metrics.NO_REFERENCE_MEASURES))
def test_no_reference_measures_track_gaussian_sigma(name, photos, blurred):
  measure, higher_is_blurrier = metrics.NO_REFERENCE_MEASURES[name]
  values = np.stack([np.asarray(measure(images)) for images in (photos, *blurred)])  # (S+1, 3)
  blurriness = values if higher_is_blurrier else -values
  assert (np.diff(blurriness, axis=0) > 0).all(), values


def test_ssim_loss_rises_with_gaussian_sigma(photos, blurred):
  losses = np.stack([1 - np.asarray(metrics.ssim(photos, b)) for b in blurred])
  assert (np.diff(losses, axis=0) > 0).all() and (losses[0] > 0).all()


def test_ssim_gradients(photos):
  x = jnp.asarray(photos[:2, :24, :24])
  y = jnp.asarray(np.clip(x + 0.1 * np.random.default_rng(0).normal(size=x.shape), 0, 1),
                  jnp.float32)
  check_grads(lambda a, b: metrics.ssim(a, b), (x, y), order=1, modes=["rev"], atol=1e-2,
              rtol=1e-2, eps=1e-3)
  # The SSIM budget is enforced near x == y, so the gradient must stay finite there.
  at_equal = jax.grad(lambda b: jnp.sum(metrics.ssim(x, b)))(x)
  assert np.isfinite(np.asarray(at_equal)).all()
  flat = jnp.full_like(x, 0.5)
  assert np.isfinite(np.asarray(jax.grad(lambda b: jnp.sum(metrics.ssim(flat, b)))(flat))).all()


def test_ms_ssim_gradient_is_finite(photos):
  x = jnp.asarray(photos[:1, :64, :64])
  grad = jax.grad(lambda y: jnp.sum(metrics.ms_ssim(x, y, weights=(0.5, 0.5), window=7)))(x * 0.8)
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0


def test_kernel_spread_is_batched_and_puts_families_on_one_axis():
  sigmas = jnp.array([1.0, 2.0])
  np.testing.assert_allclose(metrics.kernel_spread(kernels.gaussian(31, sigmas)), [2.0, 8.0],
                             rtol=1e-4)
  # A shifted kernel has the same spread: the moment is central.
  shifted = jnp.roll(kernels.gaussian(31, 2.0), 3, axis=1)
  np.testing.assert_allclose(metrics.kernel_spread(shifted), 8.0, rtol=1e-3)


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.ssim(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 8, 1))), "smaller than"),
    (lambda: metrics.ssim(np.zeros((1, 16, 16, 1)), np.zeros((1, 16, 15, 1))), "x and y"),
    (lambda: metrics.blur_effect(np.zeros((1, 16, 16, 2))), "images must be"),
    (lambda: metrics.high_frequency_ratio(np.zeros((1, 16, 16, 1)), cutoff=0.7), "cutoff"),
])
def test_bad_inputs_raise(call, message):
  with pytest.raises(ValueError, match=message):
    call()
