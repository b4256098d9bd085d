"""Classical deblurring: non-blind and blind deconvolution and sharpening.

Every function maps `(B, H, W, C)` float images in [0, 1] to images of the same shape and is pure
and jit-able; options that fix shapes or loop counts (kernel sizes, iterations, padding names)
must be static (Python values, e.g. bound with `functools.partial` before `jax.jit`).

- `wiener`, `richardson_lucy`: non-blind deconvolution with known `(k, k)` or `(B, k, k)` kernels.
- `estimate_gaussian_sigma`: a Gaussian blur sigma per image from its edges, which makes
  `blind_wiener` and `blind_richardson_lucy` blind.
- `unsharp_mask`: the trivial sharpening baseline.

The learned deblurrer is `models/unet.py`; the front-ends by name are `defense/front_end.py`.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import measures


def check_images(images):
  """`images` as an array, checked to be floating point `(B, H, W, C)`."""
  images = jnp.asarray(images)
  if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images must be floating point (B, H, W, C), got {images.shape} "
                     f"{images.dtype}")
  return images


def _check_kernels(images, kernels):
  kernels = jnp.asarray(kernels, images.dtype)
  if kernels.ndim not in (2, 3) or kernels.shape[-1] != kernels.shape[-2] or (
      kernels.shape[-1] % 2 == 0):
    raise ValueError(f"kernels must have shape (k, k) or (B, k, k) with k odd, got {kernels.shape}")
  if kernels.ndim == 3 and kernels.shape[0] not in (1, images.shape[0]):
    raise ValueError(f"kernels: count must be 1 or the batch size {images.shape[0]}, "
                     f"got {kernels.shape[0]}")
  return kernels if kernels.ndim == 3 else kernels[None]


def _check_nonnegative(name, value):
  if isinstance(value, jax.core.Tracer):
    return
  array = np.asarray(value, np.float64)
  if np.isnan(array).any() or (array < 0).any():
    raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_positive_int(name, value):
  """Raises `ValueError` naming `name` unless `value` is a positive int."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive int, got {value!r}")


# ---------------------------------------------------------------------------------- Wiener


def _transfer(kernels, height, width):
  """rfft2 of `(B, k, k)` kernels centred on the origin of a `height x width` periodic grid."""
  size = kernels.shape[-1]
  if size > min(height, width):
    raise ValueError(f"kernels of size {size} do not fit the {height}x{width} FFT grid")
  placed = jnp.zeros(kernels.shape[:1] + (height, width), kernels.dtype)
  placed = placed.at[:, :size, :size].set(kernels)
  placed = jnp.roll(placed, (-(size // 2), -(size // 2)), axis=(1, 2))
  return jnp.fft.rfft2(placed, axes=(1, 2))


_LAPLACIAN = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], np.float32)
WIENER_REGULARIZERS = ("constant", "laplacian")
WIENER_PADDINGS = ("symmetric", "reflect", "edge", "wrap")


def wiener(images, kernels, nsr=1e-2, padding="symmetric", margin=None, regularizer="constant",
           clip=False):
  """Wiener deconvolution `conj(K) Y / (|K|^2 + nsr |R|^2)` in the Fourier domain.

  Args:
    images: `(B, H, W, C)` blurred images.
    kernels: `(k, k)` or `(B, k, k)` blur kernels (as given to `blur.blur`).
    nsr: noise-to-signal power ratio, scalar or `(B,)`; larger is smoother.
    padding: "wrap" treats the image as periodic (the convention of
      `skimage.restoration.wiener`); any other numpy.pad mode first extends the image by
      `margin` pixels on every side so that the jump of the periodic extension lies outside the
      image, which removes the ringing it would cause at the borders.
    margin: static pad width; default half the shorter side (at least the kernel size).
    regularizer: "constant" (R = 1, the classic Wiener filter) or "laplacian" (R = the
      4-neighbour Laplacian, as skimage's default).
    clip: clip the result to [0, 1].
  """
  images = check_images(images)
  kernels = _check_kernels(images, kernels)
  _check_nonnegative("nsr", nsr)
  if padding not in WIENER_PADDINGS:
    raise ValueError(f"padding must be one of {WIENER_PADDINGS}, got {padding!r}")
  if regularizer not in WIENER_REGULARIZERS:
    raise ValueError(f"regularizer must be one of {WIENER_REGULARIZERS}, got {regularizer!r}")
  _, height, width, _ = images.shape
  if padding == "wrap":
    margin = 0
  elif margin is None:
    margin = min(max(min(height, width) // 2, kernels.shape[-1]), min(height, width) - 1)
  elif isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
    raise ValueError(f"margin must be a non-negative int, got {margin!r}")
  padded = jnp.pad(images, ((0, 0), (margin, margin), (margin, margin), (0, 0)), mode=padding)
  grid = padded.shape[1:3]
  k_f = _transfer(kernels, *grid)[..., None]
  if regularizer == "constant":
    r2 = 1.0
  else:
    r2 = jnp.abs(_transfer(jnp.asarray(_LAPLACIAN[None], images.dtype), *grid)[..., None]) ** 2
  nsr = jnp.asarray(nsr, images.dtype).reshape((-1, 1, 1, 1))
  y_f = jnp.fft.rfft2(padded, axes=(1, 2))
  x_f = jnp.conj(k_f) * y_f / (jnp.abs(k_f) ** 2 + nsr * r2)
  out = jnp.fft.irfft2(x_f, s=grid, axes=(1, 2))[:, margin:margin + height, margin:margin + width]
  out = out.astype(images.dtype)
  return jnp.clip(out, 0.0, 1.0) if clip else out


# ------------------------------------------------------------------------- Richardson-Lucy


def richardson_lucy(images, kernels, iterations=30, padding="reflect", init=None, eps=1e-12,
                    clip=False):
  """Richardson-Lucy deconvolution, `x <- x * (K^T (y / (K x + eps)))`, for `iterations` steps.

  `init=None` starts from the blurred image (converges in fewer steps than a constant); a float
  starts from that constant. With `padding="constant"`, `init=0.5` and `eps=1e-12` this is
  `skimage.restoration.richardson_lucy(..., clip=False)` per channel. Images should be
  non-negative (as photons are); the result stays non-negative.
  """
  images = check_images(images)
  kernels = _check_kernels(images, kernels)
  check_positive_int("iterations", iterations)
  _check_nonnegative("eps", eps)
  if kernels.shape[0] == 1:
    kernels = kernels[0]
  flipped = kernels[..., ::-1, ::-1]
  conv = functools.partial(blur_lib.blur, padding=padding)

  def step(_, estimate):
    ratio = images / (conv(estimate, kernels) + eps)
    return estimate * conv(ratio, flipped)

  start = images if init is None else jnp.full_like(images, init)
  out = lax.fori_loop(0, iterations, step, start)
  return jnp.clip(out, 0.0, 1.0) if clip else out


# --------------------------------------------------------------------------- unsharp mask


def unsharp_mask(images, radius=1.0, amount=1.0, clip=True):
  """`x + amount (x - G_radius x)`: skimage.filters.unsharp_mask's formula and Gaussian.

  The Gaussian is skimage's (truncated at 4 sigma, 'reflect' = numpy 'symmetric' borders);
  `radius` is static because it fixes the kernel size.
  """
  images = check_images(images)
  if not radius > 0:
    raise ValueError(f"radius must be > 0, got {radius!r}")
  _check_nonnegative("amount", amount)
  size = 2 * int(4.0 * radius + 0.5) + 1
  smooth = blur_lib.blur(images, kernels_lib.gaussian(size, float(radius)), padding="symmetric")
  out = images + amount * (images - smooth)
  return jnp.clip(out, 0.0, 1.0) if clip else out


# --------------------------------------------------------------------- blind sigma estimate

# A central difference is the derivative of the signal averaged over [-1, 1] along that axis; on
# a sampled step edge it adds variance 1/4 px^2 (the [1/2, 1/2] average of two taps) to the edge's
# own, in both the image and its re-blurred copy. It is removed from the estimate.
_CENTRAL_DIFFERENCE_VARIANCE = 0.25


def _safe_sqrt(x):
  """sqrt with gradient 0 (not inf or NaN) at 0, so attacks can differentiate through the
  blind front-ends on flat regions and flat images."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _gradient_magnitude(gray):
  """|grad| of `(N, H, W, 1)` images by central differences with symmetric borders, `(N, H, W)`."""
  dx = np.zeros((3, 3), np.float32)
  dx[1, 0], dx[1, 2] = 0.5, -0.5
  gx = blur_lib.blur(gray, dx, padding="symmetric")[..., 0]
  gy = blur_lib.blur(gray, dx.T.copy(), padding="symmetric")[..., 0]
  return _safe_sqrt(gx**2 + gy**2)


def _weighted_median(values, weights):
  """Per row of `(B, N)` arrays; 0 where all weights are 0."""
  order = jnp.argsort(values, axis=-1)
  values = jnp.take_along_axis(values, order, axis=-1)
  cumulative = jnp.cumsum(jnp.take_along_axis(weights, order, axis=-1), axis=-1)
  total = cumulative[:, -1:]
  index = jnp.argmax(cumulative >= 0.5 * total, axis=-1)
  median = jnp.take_along_axis(values, index[:, None], axis=-1)[:, 0]
  return jnp.where(total[:, 0] > 0, median, 0.0)


def estimate_gaussian_sigma(images, reblur_sigma=0.5, max_sigma=4.0, edge_threshold=0.4,
                            border=3):
  """Gaussian blur sigma of each image from the gradient ratio at its edges, `(B,)`.

  Zhuo & Sim (2011): re-blurring a step edge of width sigma by a Gaussian of variance v lowers
  the peak gradient by the factor R = sqrt(sigma^2 + v) / sigma, so sigma^2 = v / (R^2 - 1)
  (v is the sampled re-blur kernel's variance; the central differences' own 1/4 px^2 is taken
  off). It is evaluated at edge pixels (3x3 local maxima of the gradient magnitude above
  `edge_threshold` times the image's largest, away from a `border`) and summarized by the
  gradient-weighted median, so stray values from textures, where neighbouring edges interfere,
  do not move it. The result is the image's total blur, including whatever softness the "clean"
  image already had, clipped to [0, max_sigma]. A small `reblur_sigma` keeps neighbouring edges
  apart (less bias at large sigma) at the cost of more sensitivity to noise.
  """
  images = check_images(images)
  if not reblur_sigma > 0 or not max_sigma > 0:
    raise ValueError(f"reblur_sigma and max_sigma must be > 0, got {reblur_sigma!r}, "
                     f"{max_sigma!r}")
  if not 0.0 <= edge_threshold < 1.0:
    raise ValueError(f"edge_threshold must be in [0, 1), got {edge_threshold!r}")
  batch, height, width, _ = images.shape
  gray = jnp.mean(images, axis=-1, keepdims=True)
  size = min(2 * math.ceil(3 * reblur_sigma) + 1, 2 * (min(height, width) - 1) - 1)
  reblur_kernel = kernels_lib.gaussian(size, float(reblur_sigma))
  reblurred = blur_lib.blur(gray, reblur_kernel, padding="symmetric")
  # The sampled kernel's variance, not reblur_sigma^2: they differ for sigma below ~0.8.
  reblur_variance = measures.kernel_spread(reblur_kernel) / 2
  magnitudes = _gradient_magnitude(jnp.concatenate([gray, reblurred]))
  sharp, smooth = magnitudes[:batch], magnitudes[batch:]
  local_max = lax.reduce_window(sharp, -jnp.inf, lax.max, (1, 3, 3), (1, 1, 1), "SAME")
  strongest = jnp.max(sharp, axis=(1, 2), keepdims=True)
  edges = (sharp >= local_max) & (sharp > edge_threshold * strongest) & (smooth > 0)
  inner = np.zeros((height, width), bool)
  inner[border:height - border, border:width - border] = True
  edges = edges & inner
  ratio2 = (sharp / jnp.where(edges, smooth, 1.0)) ** 2
  variance = reblur_variance / jnp.maximum(ratio2 - 1.0, 1e-6) - _CENTRAL_DIFFERENCE_VARIANCE
  variance = jnp.clip(variance, 0.0, max_sigma**2)
  weights = jnp.where(edges, sharp, 0.0)
  median = _weighted_median(variance.reshape(batch, -1), weights.reshape(batch, -1))
  return _safe_sqrt(median)


def _blind_kernels(images, max_sigma, estimate_options):
  sigma = estimate_gaussian_sigma(images, max_sigma=max_sigma, **estimate_options)
  _, height, width, _ = images.shape
  # Large enough for 3 max_sigma, small enough for `blur`'s limit on the image size.
  size = min(2 * math.ceil(3 * max_sigma) + 1, 2 * (min(height, width) - 1) - 1)
  return kernels_lib.gaussian(size, sigma), sigma


def blind_wiener(images, nsr=1e-2, max_sigma=4.0, padding="symmetric", clip=True,
                 **estimate_options):
  """Wiener deconvolution with a Gaussian kernel of the sigma `estimate_gaussian_sigma` finds."""
  images = check_images(images)
  kernels, _ = _blind_kernels(images, max_sigma, estimate_options)
  return wiener(images, kernels, nsr=nsr, padding=padding, clip=clip)


def blind_richardson_lucy(images, iterations=20, max_sigma=4.0, padding="reflect", clip=True,
                          **estimate_options):
  """Richardson-Lucy with a Gaussian kernel of the sigma `estimate_gaussian_sigma` finds."""
  images = check_images(images)
  kernels, _ = _blind_kernels(images, max_sigma, estimate_options)
  return richardson_lucy(images, kernels, iterations=iterations, padding=padding, clip=clip)
