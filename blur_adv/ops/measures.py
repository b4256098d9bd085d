"""Measuring blur: full-reference image quality, no-reference blurriness, and kernel severity.

All image measures take `(B, H, W, C)` float batches and return one value per image, `(B,)`.

SSIM is written here rather than taken from dm-pix because MS-SSIM needs the contrast-structure
term per channel, which dm-pix does not expose, and one implementation should serve both. The
Gaussian window is applied as two small matmuls: on CPU that is about 10x faster than dm-pix's
default per-row `jnp.convolve`, and it is exact float32 on every backend (`Precision.HIGHEST`).
PSNR is dm-pix's.
"""

import functools

import dm_pix
import jax.numpy as jnp
import numpy as np
from jax import lax

from blur_adv.ops import blur as blur_lib

# Wang et al. 2004 (see ../shared/REFERENCE.md): 11x11 Gaussian window, sigma 1.5, K1, K2.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Wang, Simoncelli & Bovik 2003, the weights of the five MS-SSIM scales (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# ITU-R BT.709 luma, as skimage.color.rgb2gray (used by the reference blur_effect).
_LUMA = (0.2125, 0.7154, 0.0721)


@functools.lru_cache(maxsize=None)
def _valid_gaussian_matrix(length, window, sigma):
  """`(length - window + 1, length)` matrix whose rows are the shifted, normalized window."""
  taps = np.exp(-0.5 * ((np.arange(window) - window // 2) / sigma) ** 2)
  taps /= taps.sum()
  matrix = np.zeros((length - window + 1, length), np.float32)
  for row in range(matrix.shape[0]):
    matrix[row, row:row + window] = taps
  return matrix


def _gaussian_filter_valid(images, window, sigma):
  """Separable Gaussian filter over H and W, keeping only positions where the window fits."""
  _, height, width, _ = images.shape
  rows = jnp.asarray(_valid_gaussian_matrix(height, window, sigma), images.dtype)
  cols = jnp.asarray(_valid_gaussian_matrix(width, window, sigma), images.dtype)
  hi = lax.Precision.HIGHEST
  out = jnp.einsum("ih,bhwc->biwc", rows, images, precision=hi)
  return jnp.einsum("jw,biwc->bijc", cols, out, precision=hi)


def _check_pair(x, y, window):
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(f"x and y must both be (B, H, W, C); got {x.shape} and {y.shape}")
  if min(x.shape[1:3]) < window:
    raise ValueError(f"images of {x.shape[1]}x{x.shape[2]} are smaller than the {window}x{window} "
                     "SSIM window")


def _ssim_from_moments(mu_x, mu_y, var_x, var_y, cov, max_val):
  """Per-channel mean SSIM and mean contrast-structure term, each `(B, C)`, from local moments."""
  c1 = (SSIM_K1 * max_val) ** 2
  c2 = (SSIM_K2 * max_val) ** 2
  luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
  contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
  return (jnp.mean(luminance * contrast_structure, axis=(1, 2)),
          jnp.mean(contrast_structure, axis=(1, 2)))


def _ssim_terms(x, y, max_val, window, sigma):
  """Per-channel mean SSIM and mean contrast-structure term, each `(B, C)`."""
  filt = lambda z: _gaussian_filter_valid(z, window, sigma)
  mu_x, mu_y = filt(x), filt(y)
  var_x = filt(x * x) - mu_x**2
  var_y = filt(y * y) - mu_y**2
  cov = filt(x * y) - mu_x * mu_y
  return _ssim_from_moments(mu_x, mu_y, var_x, var_y, cov, max_val)


def ssim(x, y, max_val=1.0, window=SSIM_WINDOW, sigma=SSIM_SIGMA):
  """Mean SSIM of each image pair over valid window positions and channels, `(B,)`.

  Matches `skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=max_val, channel_axis=-1)`. Its gradient is finite
  everywhere, including at x == y (there is no square root in the formula).
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  _check_pair(x, y, window)
  per_channel, _ = _ssim_terms(x, y, max_val, window, sigma)
  return jnp.mean(per_channel, axis=-1)


def ssim_along_blend(x, d, max_val=1.0, window=SSIM_WINDOW, sigma=SSIM_SIGMA):
  """`alpha -> ssim(x, x + alpha d)` for `(B,)` alphas, with all the filtering done up front.

  Every local moment SSIM needs is a polynomial in alpha: with y = x + alpha d,
  mu_y = mu_x + alpha mu_d, var_y = var_x + 2 alpha cov_xd + alpha^2 var_d and
  cov_xy = var_x + alpha cov_xd. So five filtered maps serve any number of alphas, and each
  evaluation is elementwise (this is what makes the budget bisection cheap). Agrees with `ssim`
  to float32 rounding (~1e-6).
  """
  x, d = jnp.asarray(x), jnp.asarray(d)
  _check_pair(x, d, window)
  filt = lambda z: _gaussian_filter_valid(z, window, sigma)
  mu_x, mu_d = filt(x), filt(d)
  # Centred second moments: subtracting the means once here, not per alpha.
  var_x = filt(x * x) - mu_x**2
  cov_xd = filt(x * d) - mu_x * mu_d
  var_d = filt(d * d) - mu_d**2

  def at(alpha):
    a = jnp.asarray(alpha, x.dtype).reshape((-1, 1, 1, 1))
    cov = var_x + a * cov_xd
    var_y = cov + a * (cov_xd + a * var_d)
    per_channel, _ = _ssim_from_moments(mu_x, mu_x + a * mu_d, var_x, var_y, cov, max_val)
    return jnp.mean(per_channel, axis=-1)

  return at


def _halve(images):
  """2x2 average pooling; odd sizes are first padded by repeating the last row/column."""
  _, height, width, _ = images.shape
  images = jnp.pad(images, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="symmetric")
  b, h, w, c = images.shape
  return images.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim(x, y, max_val=1.0, weights=MS_SSIM_WEIGHTS, window=SSIM_WINDOW, sigma=SSIM_SIGMA):
  """Multi-scale SSIM (Wang et al. 2003), `(B,)`; the conventions of `tf.image.ssim_multiscale`.

  The image is halved `len(weights) - 1` times; every scale must still hold the SSIM window, so
  5 scales need at least 176 pixels a side. For small images pass fewer weights and/or a smaller
  window, e.g. `weights=MS_SSIM_WEIGHTS[:3], window=7` for 32x32.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  smallest = window * 2 ** (len(weights) - 1)
  if min(x.shape[1:3]) < smallest:
    raise ValueError(f"ms_ssim with {len(weights)} scales and window {window} needs images of at "
                     f"least {smallest}x{smallest}, got {x.shape[1]}x{x.shape[2]}")
  _check_pair(x, y, window)
  factors = []
  for scale in range(len(weights)):
    if scale:
      x, y = _halve(x), _halve(y)
    full, contrast_structure = _ssim_terms(x, y, max_val, window, sigma)
    factors.append(contrast_structure if scale < len(weights) - 1 else full)
  # Negative terms are clipped to 0 as in the reference, so the fractional powers stay real.
  stacked = jnp.maximum(jnp.stack(factors, axis=-1), 0.0)
  per_channel = jnp.prod(stacked ** jnp.asarray(weights, stacked.dtype), axis=-1)
  return jnp.mean(per_channel, axis=-1)


def psnr(x, y, max_val=1.0):
  """Peak signal-to-noise ratio in dB, `(B,)` (infinite for identical images)."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  return dm_pix.psnr(x / max_val, y / max_val)


# ---------------------------------------------------------------------------------------------
# No-reference measures. Each works on luminance: RGB is converted with the BT.709 weights and
# single-channel images are used as they are.


def _luminance(images):
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be (B, H, W, 1) or (B, H, W, 3), got {images.shape}")
  if images.shape[-1] == 1:
    return images
  return jnp.tensordot(images, jnp.asarray(_LUMA, images.dtype), axes=[[-1], [0]])[..., None]


def _filter(gray, kernel, padding="symmetric"):
  return blur_lib.blur(gray, jnp.asarray(kernel, gray.dtype), padding=padding)[..., 0]


def _sobel_kernels():
  """Sobel derivative kernels along rows and along columns ([1, 0, -1] x [1, 2, 1])."""
  derivative = np.array([1.0, 0.0, -1.0])
  smooth = np.array([1.0, 2.0, 1.0])
  return np.outer(derivative, smooth), np.outer(smooth, derivative)


def laplacian_variance(images):
  """Variance of the 4-neighbour Laplacian of the luminance (sharpness: falls with blur)."""
  laplacian = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
  return jnp.var(_filter(_luminance(images), laplacian), axis=(1, 2))


def tenengrad(images):
  """Mean squared Sobel gradient magnitude of the luminance (sharpness: falls with blur)."""
  gray = _luminance(images)
  along_rows, along_cols = _sobel_kernels()
  return jnp.mean(_filter(gray, along_rows) ** 2 + _filter(gray, along_cols) ** 2, axis=(1, 2))


def blur_effect(images, h_size=11):
  """Crete-Roffet et al. 2007 blur effect in [0, 1] (blurriness: rises with blur).

  The measure of `skimage.measure.blur_effect(image, h_size, channel_axis=-1)`: the image is
  re-blurred by an `h_size` box along each axis and the loss of Sobel variation is compared with
  the original's; the larger loss over the two axes is reported (1 - loss).
  """
  gray = _luminance(images)
  if h_size % 2 == 0:
    raise ValueError(f"h_size must be odd, got {h_size}")
  sobel_kernels = np.stack([k / 4.0 for k in _sobel_kernels()])  # skimage scales smoothing by 1/4
  tiny = float(np.spacing(np.float32(1)) ** 2)
  values = []
  for axis in (0, 1):
    box = np.zeros((h_size, h_size))
    if axis == 0:
      box[:, h_size // 2] = 1.0 / h_size
    else:
      box[h_size // 2, :] = 1.0 / h_size
    reblurred = _filter(gray, box)[..., None]
    sharp = jnp.maximum(tiny, jnp.abs(_filter(gray, sobel_kernels[axis])))
    smooth = jnp.maximum(tiny, jnp.abs(_filter(reblurred, sobel_kernels[axis])))
    # The reference ignores a 2-pixel top/left and 1-pixel bottom/right border.
    crop = (slice(None), slice(2, -1), slice(2, -1))
    total = jnp.sum(sharp[crop], axis=(1, 2))
    lost = jnp.sum(jnp.maximum(0.0, sharp - smooth)[crop], axis=(1, 2))
    values.append(jnp.abs(total - lost) / total)
  return jnp.maximum(values[0], values[1])


def high_frequency_ratio(images, cutoff=0.25):
  """Share of the (mean-removed) luminance spectrum's energy above `cutoff` cycles/pixel.

  Sharpness: falls with blur. `cutoff` is a radial frequency in (0, 0.5]; 0.5 is Nyquist.
  """
  if not 0.0 < cutoff <= 0.5:
    raise ValueError(f"cutoff must be in (0, 0.5], got {cutoff}")
  gray = _luminance(images)[..., 0]
  gray = gray - jnp.mean(gray, axis=(1, 2), keepdims=True)
  # A Hann window removes the jump at the borders of the periodic extension, which would
  # otherwise put broadband energy into every image, blurred or not.
  window = np.outer(np.hanning(gray.shape[1]), np.hanning(gray.shape[2]))
  power = jnp.abs(jnp.fft.rfft2(gray * jnp.asarray(window, gray.dtype))) ** 2
  fy = np.fft.fftfreq(gray.shape[1])[:, None]
  fx = np.fft.rfftfreq(gray.shape[2])[None, :]
  high = jnp.asarray(np.sqrt(fx**2 + fy**2) > cutoff, power.dtype)
  # rfft2 stores the positive-frequency half; the doubling it implies cancels in the ratio.
  return jnp.sum(power * high, axis=(1, 2)) / (jnp.sum(power, axis=(1, 2)) + 1e-12)


# name -> (function, True when larger values mean a blurrier image)
NO_REFERENCE_MEASURES = {
    "laplacian_variance": (laplacian_variance, False),
    "tenengrad": (tenengrad, False),
    "blur_effect": (blur_effect, True),
    "high_frequency_ratio": (high_frequency_ratio, False),
}


def kernel_spread(kernels):
  """Second central moment `sum_u k(u) |u - mean|^2` of `(..., k, k)` kernels, in pixels^2.

  Puts every family on one severity axis: a Gaussian of sigma s gives 2 s^2, a disk of radius r
  about r^2 / 2, a line of length L about L^2 / 12 (continuous limits).
  """
  kernels = jnp.asarray(kernels)
  size = kernels.shape[-1]
  offsets = jnp.arange(size, dtype=kernels.dtype) - size // 2
  mass = jnp.sum(kernels, axis=(-2, -1))
  row_marginal = jnp.sum(kernels, axis=-1)
  col_marginal = jnp.sum(kernels, axis=-2)
  spread = 0.0
  for marginal in (row_marginal, col_marginal):
    mean = jnp.sum(marginal * offsets, axis=-1) / mass
    spread = spread + jnp.sum(marginal * (offsets - mean[..., None]) ** 2, axis=-1) / mass
  return spread
