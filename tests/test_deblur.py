"""Deblurring front-ends against skimage/scipy/numpy references and on real photos."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import skimage.data
import skimage.filters
import skimage.restoration
from skimage.transform import resize

from blur_adv.defense import front_end
from blur_adv.models import unet
from blur_adv.ops import augment
from blur_adv.ops import blur as blur_lib
from blur_adv.ops import deblur
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import measures as metrics
from blur_adv.trainers import losses

SIDE = 64
# Point-symmetric kernels hide a missing flip; this camera-shake path is not symmetric.
ASYMMETRIC = np.asarray(kernels_lib.motion_path(11, np.array([[0.0, 0.0], [4.0, 1.0], [2.0, 4.0]])))


def _photo(name, side):
  """A centred square crop of a bundled photo, resized to `side` (RGB, float32 in [0, 1])."""
  image = getattr(skimage.data, name)().astype(np.float64) / 255
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  height, width = image.shape[:2]
  short = min(height, width)
  top, left = (height - short) // 2, (width - short) // 2
  image = image[top:top + short, left:left + short]
  return resize(image, (side, side), anti_aliasing=True).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _photos(side=SIDE):
  return jnp.asarray(np.stack([_photo(n, side) for n in ("astronaut", "chelsea", "camera")]))


@functools.lru_cache(maxsize=None)
def _true_kernel_case():
  """Each photo blurred by a Gaussian, a defocus disk and a motion streak: 9 examples."""
  kernels = [kernels_lib.gaussian(11, 1.5), kernels_lib.defocus(11, 2.5),
             kernels_lib.motion(11, 7.0, 0.5)]
  clean = jnp.concatenate([_photos()] * len(kernels))
  kernels = jnp.repeat(jnp.stack(kernels), _photos().shape[0], axis=0)
  return clean, kernels, blur_lib.blur(clean, kernels)


def _gap_closed(restored, blurred, clean):
  """Share of the SSIM gap to 1 that restoration closes, per image."""
  before, after = metrics.ssim(blurred, clean), metrics.ssim(restored, clean)
  print("SSIM before", np.round(before, 3), "after", np.round(after, 3))
  return np.asarray((after - before) / (1 - before))


NON_BLIND = {
    "wiener": jax.jit(functools.partial(deblur.wiener, nsr=1e-2, clip=True)),
    "richardson_lucy": jax.jit(functools.partial(deblur.richardson_lucy, iterations=30,
                                                 clip=True)),
}


@pytest.mark.parametrize("method", sorted(NON_BLIND))
def test_true_kernel_deconvolution_raises_ssim(method):
  clean, kernels, blurred = _true_kernel_case()
  closed = _gap_closed(NON_BLIND[method](blurred, kernels), blurred, clean)
  assert closed.min() > 0.25 and closed.mean() > 0.45, closed


def _per_channel(fn, images):
  return np.stack([fn(images[..., c]) for c in range(images.shape[-1])], axis=-1)


def test_richardson_lucy_matches_skimage():
  # Lifted off zero: near-black pixels make y / (K x) ill-conditioned, in either implementation.
  clean = 0.1 + 0.8 * _photos()[:1]
  blurred = np.asarray(blur_lib.blur(clean, ASYMMETRIC, padding="constant"))[0]
  iterations = 30
  ours = deblur.richardson_lucy(blurred[None], ASYMMETRIC, iterations, padding="constant",
                                init=0.5)[0]
  reference = {
      dtype: _per_channel(lambda x: skimage.restoration.richardson_lucy(
          x.astype(dtype), ASYMMETRIC.astype(dtype), iterations, clip=False), blurred)
      for dtype in (np.float32, np.float64)}
  # Tolerance: ten times how far skimage's own float32 run drifts from its float64 run on this
  # very problem, i.e. the float32 rounding that 30 multiplicative updates accumulate.
  rounding = np.abs(reference[np.float32] - reference[np.float64]).max()
  difference = np.abs(np.asarray(ours) - reference[np.float64]).max()
  print("RL vs skimage max |diff|", difference, "skimage f32 vs f64", rounding)
  assert difference <= 10 * rounding + 1e-7


def test_wiener_matches_skimage_with_its_conventions():
  # skimage's wiener is periodic with a Laplacian regularizer: padding="wrap", "laplacian".
  blurred = np.asarray(blur_lib.blur(_photos()[:1], ASYMMETRIC))[0]
  ours = deblur.wiener(blurred[None], ASYMMETRIC, nsr=0.01, padding="wrap",
                       regularizer="laplacian")[0]
  reference = _per_channel(lambda x: skimage.restoration.wiener(
      x.astype(np.float64), ASYMMETRIC.astype(np.float64), 0.01, clip=False), blurred)
  np.testing.assert_allclose(ours, reference, atol=1e-5)


def _numpy_wiener(image, kernel, nsr, margin):
  """float64 reference: mirror-pad, divide spectra with a centred, zero-padded kernel, crop."""
  padded = np.pad(image.astype(np.float64), ((margin, margin), (margin, margin), (0, 0)),
                  mode="symmetric")
  grid = np.zeros(padded.shape[:2])
  half = kernel.shape[0] // 2
  for (row, col), value in np.ndenumerate(kernel):
    grid[(row - half) % grid.shape[0], (col - half) % grid.shape[1]] = value
  otf = np.fft.fft2(grid)[..., None]
  spectrum = np.fft.fft2(padded, axes=(0, 1))
  out = np.fft.ifft2(np.conj(otf) * spectrum / (np.abs(otf) ** 2 + nsr), axes=(0, 1)).real
  return out[margin:-margin, margin:-margin]


def test_padded_wiener_matches_numpy_with_per_example_kernels_and_nsr():
  clean, kernels, blurred = _true_kernel_case()
  nsr = np.linspace(1e-3, 3e-2, clean.shape[0]).astype(np.float32)
  ours = deblur.wiener(blurred, kernels, nsr=nsr, padding="symmetric", margin=20)
  reference = np.stack([_numpy_wiener(np.asarray(y), np.asarray(k), n, 20)
                        for y, k, n in zip(blurred, kernels, nsr)])
  np.testing.assert_allclose(ours, reference, atol=2e-5)


def test_padded_wiener_inverts_a_well_conditioned_blur_up_to_the_borders():
  # A kernel whose transfer function stays >= 0.6 is exactly invertible; with mirror padding
  # the inversion is exact at the borders too, while the periodic assumption rings there.
  kernel = 0.6 * kernels_lib.identity(7) + 0.4 * kernels_lib.gaussian(7, 1.0)
  clean = _photos()[:1]
  blurred = blur_lib.blur(clean, kernel, padding="symmetric")
  mirrored = deblur.wiener(blurred, kernel, nsr=0.0, padding="symmetric")
  periodic = deblur.wiener(blurred, kernel, nsr=0.0, padding="wrap")
  assert np.abs(np.asarray(mirrored - clean)).max() < 1e-4
  assert np.abs(np.asarray(periodic - clean)).max() > 1e-2


SIGMAS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def test_sigma_estimate_on_gaussian_blurred_photos():
  photos = _photos()
  blurred = jnp.concatenate([blur_lib.blur(photos, kernels_lib.gaussian(21, s)) for s in SIGMAS])
  estimator = jax.jit(deblur.estimate_gaussian_sigma)
  truth = np.asarray(SIGMAS)[:, None]
  # Within 0.2 px + 20%: the photos' own edges are not perfect steps, and at large sigma nearby
  # edges merge, which biases the estimate low.
  tolerance = 0.2 + 0.2 * truth
  estimate = np.asarray(estimator(blurred)).reshape(len(SIGMAS), photos.shape[0])
  print("sigma estimates (rows: sigma, columns: photo)\n", np.round(estimate, 2))
  print("max |error|", np.abs(estimate - truth).max())
  assert (np.abs(estimate - truth) <= tolerance).all()
  assert (np.diff(estimate, axis=0) > 0).all()  # more blur, larger estimate, on every photo
  # Stored as 8 bits, the quantization noise swamps the weak edges of the strongest blur (3 px
  # on 64 px photos); below that the same tolerance holds.
  quantized = np.asarray(estimator(jnp.round(blurred * 255) / 255))
  quantized = quantized.reshape(len(SIGMAS), photos.shape[0])
  print("8-bit sigma estimates\n", np.round(quantized, 2))
  assert (np.abs(quantized - truth) <= tolerance)[truth[:, 0] <= 2.5].all()


@functools.lru_cache(maxsize=None)
def _blind_case():
  """Each photo sharp and blurred by Gaussians of sigma 1 and 2: 9 examples."""
  photos = _photos()
  sigmas = (0.0, 1.0, 2.0)
  blurred = jnp.concatenate([blur_lib.blur(photos, kernels_lib.gaussian(13, s)) for s in sigmas])
  return jnp.concatenate([photos] * len(sigmas)), blurred


@pytest.mark.parametrize("name", ["wiener", "richardson_lucy"])
def test_blind_deblurring_improves_gaussian_blurred_photos(name):
  clean, blurred = _blind_case()
  restored = jax.jit(front_end.get_front_end(name))(blurred)
  count = _photos().shape[0]
  closed = _gap_closed(restored[count:], blurred[count:], clean[count:])
  assert closed.min() > 0.2 and closed.mean() > 0.4, closed
  # A defense front-end must not wreck sharp inputs.
  sharp = np.asarray(metrics.ssim(restored[:count], clean[:count]))
  print("SSIM of sharp photos after the front-end", np.round(sharp, 3))
  assert sharp.min() > 0.95


def test_unsharp_mask_matches_skimage_and_sharpens():
  # Clipped: FFT blurring leaves values like -3e-7, which make skimage skip its [0, 1] clip.
  blurred = jnp.clip(_blind_case()[1], 0.0, 1.0)
  ours = jax.jit(front_end.get_front_end("unsharp", radius=1.0, amount=1.0))(blurred)
  # channel_axis=2, not -1: skimage 0.26 slices axis 0 for a negative channel_axis here.
  reference = np.stack([skimage.filters.unsharp_mask(np.asarray(y), radius=1.0, amount=1.0,
                                                     channel_axis=2) for y in blurred])
  np.testing.assert_allclose(ours, reference, atol=1e-5)
  assert (np.asarray(metrics.laplacian_variance(ours) / metrics.laplacian_variance(blurred))
          > 1.2).all()
  assert (np.asarray(metrics.tenengrad(ours) > metrics.tenengrad(blurred))).all()


def test_unet_starts_as_identity_and_learns_to_deblur_held_out_crops():
  features = (8, 16, 32)
  model = unet.DeblurUNet(features=features)
  odd = _photos()[:1, :33, :45]  # odd sizes: pooling and resizing must still line up
  params = jax.jit(model.init)(jax.random.key(0), odd)
  np.testing.assert_array_equal(jax.jit(model.apply)(params, odd), odd)

  train = jnp.asarray(np.stack([_photo("astronaut", 96), _photo("coffee", 96)]))
  model, params, losses = unet.train_unet(jax.random.key(1), train, steps=300, batch_size=8,
                                            crop=32, features=features, learning_rate=3e-3,
                                            params=params)
  losses = np.asarray(losses)
  print("U-Net training loss, first 50 steps", losses[:50].mean(), "last 50", losses[-50:].mean())
  assert losses[-50:].mean() < 0.9 * losses[:50].mean()
  # Held out: a photo never seen in training, blurred by kernels from an unseen key. The
  # untrained network is the identity, so "before" is also the initial held-out loss.
  test = _photo("chelsea", 96)
  crops = jnp.asarray(np.stack([test[r:r + 32, c:c + 32] for r in (0, 32, 64)
                                for c in (0, 32, 64)]))
  blurred = jax.jit(functools.partial(augment.augment, size=7))(jax.random.key(123), crops, 1.0)
  restored = jax.jit(front_end.get_front_end("unet", params=params, model=model))(blurred)
  loss_before = float(jnp.mean(jnp.abs(blurred - crops)))
  loss_after = float(jnp.mean(jnp.abs(restored - crops)))
  before, after = metrics.ssim(blurred, crops), metrics.ssim(restored, crops)
  print("U-Net held-out L1", loss_before, "->", loss_after)
  print("U-Net held-out SSIM before", np.round(before, 3), "after", np.round(after, 3))
  assert loss_after < 0.9 * loss_before
  assert float(jnp.mean(after - before)) > 0.01
  assert int(jnp.sum(after > before)) >= 7  # most of the 9 crops improve


def test_consistency_loss_is_jensen_shannon():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 5, 10)) * 3
  loss = jax.jit(losses.consistency_loss)
  ours = float(loss(a, b))
  softmax = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(
      z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
  # scipy returns the JS distance, the square root of the divergence.
  reference = np.mean([scipy.spatial.distance.jensenshannon(p, q) ** 2
                       for p, q in zip(softmax(a), softmax(b))])
  np.testing.assert_allclose(ours, reference, rtol=1e-5)
  np.testing.assert_allclose(float(loss(b, a)), ours, rtol=1e-6)
  assert float(loss(a, a)) == pytest.approx(0.0, abs=1e-7)
  far = np.zeros((5, 10))
  far[:, 0] = 100.0
  assert float(loss(far, far[:, ::-1])) == pytest.approx(np.log(2), rel=1e-5)
  grad = jax.jit(jax.grad(losses.consistency_loss))(a, a)
  assert np.isfinite(np.asarray(grad)).all()


def test_front_end_registry():
  assert set(front_end.FRONT_ENDS) == {"none", "unsharp", "wiener", "richardson_lucy", "unet"}
  images = _photos()
  np.testing.assert_array_equal(front_end.get_front_end("none")(images), images)


@pytest.mark.parametrize("call, field", [
    (lambda x, k: deblur.richardson_lucy(x, k, iterations=0), "iterations"),
    (lambda x, k: deblur.richardson_lucy(x, k, iterations=2.5), "iterations"),
    (lambda x, k: deblur.wiener(x, k, nsr=-1.0), "nsr"),
    (lambda x, k: deblur.wiener(x, k, regularizer="tv"), "regularizer"),
    (lambda x, k: deblur.wiener(x, k, padding="zeros"), "padding"),
    (lambda x, k: deblur.wiener(x, k[:, :4, :4]), "kernels"),
    (lambda x, k: deblur.wiener(x[0], k), "images"),
    (lambda x, k: deblur.unsharp_mask(x, radius=0.0), "radius"),
    (lambda x, k: deblur.estimate_gaussian_sigma(x, edge_threshold=1.5), "edge_threshold"),
    (lambda x, k: front_end.get_front_end("sharpen"), "front_end"),
    (lambda x, k: front_end.get_front_end("unet"), "params"),
    (lambda x, k: losses.consistency_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4))), "logits"),
    (lambda x, k: unet.train_unet(jax.random.key(0), x, steps=0), "steps"),
])
def test_bad_input_raises_a_one_line_value_error(call, field):
  images = jnp.zeros((2, 16, 16, 3))
  kernels = jnp.broadcast_to(kernels_lib.gaussian(5, 1.0), (2, 5, 5))
  with pytest.raises(ValueError, match=field) as info:
    call(images, kernels)
  assert "\n" not in str(info.value)
