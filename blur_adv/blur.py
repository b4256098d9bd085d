"""Applying blur kernels to batches of images.

`blur(images, kernels)` is a mathematical convolution (the kernel is flipped), so on every channel
it equals `scipy.ndimage.convolve` with the matching boundary mode. Kernels are shared by the whole
batch (`(k, k)`) or given one per example (`(B, k, k)`); every channel uses the same kernel.

Several strategies compute the same result; `method="auto"` picks one from the shapes, and a user
can force any strategy by name (e.g. to compare them, or on hardware where another is faster).
"""

import jax
import jax.numpy as jnp
from jax import lax

# numpy.pad's names for the boundary modes, and scipy.ndimage's name for each (for users and tests).
PADDING_TO_SCIPY_MODE = {
    "reflect": "mirror",
    "symmetric": "reflect",
    "edge": "nearest",
    "constant": "constant",
    "wrap": "grid-wrap",
}


def _validate(images, kernels, padding):
  if images.ndim != 4:
    raise ValueError(f"images must have shape (B, H, W, C), got {images.shape}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images must be floating point, got dtype {images.dtype}")
  if kernels.ndim not in (2, 3) or kernels.shape[-1] != kernels.shape[-2]:
    raise ValueError(f"kernels must have shape (k, k) or (B, k, k), got {kernels.shape}")
  size = kernels.shape[-1]
  if size % 2 == 0:
    raise ValueError(f"kernel size must be odd, got {size}")
  if kernels.ndim == 3 and kernels.shape[0] not in (1, images.shape[0]):
    raise ValueError(
        f"kernel count must be 1 or the batch size {images.shape[0]}, got {kernels.shape[0]}")
  if padding not in PADDING_TO_SCIPY_MODE:
    raise ValueError(f"padding must be one of {sorted(PADDING_TO_SCIPY_MODE)}, got {padding!r}")
  half, height, width = size // 2, images.shape[1], images.shape[2]
  if half > min(height, width) - 1:
    raise ValueError(
        f"kernel size {size} is too large for {height}x{width} images: "
        f"it needs size // 2 <= {min(height, width) - 1}")


def _pad(images, half, padding):
  return jnp.pad(images, ((0, 0), (half, half), (half, half), (0, 0)), mode=padding)


def _direct(padded, kernels):
  """Grouped `lax` convolution of the padded images: one group per (example, channel)."""
  batch, _, _, channels = padded.shape
  size = kernels.shape[-1]
  flipped = kernels[..., ::-1, ::-1]
  if kernels.ndim == 2:
    rhs = jnp.broadcast_to(flipped[:, :, None, None], (size, size, 1, channels))
    return lax.conv_general_dilated(
        padded, rhs, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels)
  # Fold the batch into channels so each example's channels see that example's kernel.
  stacked = jnp.transpose(padded, (1, 2, 0, 3)).reshape(1, *padded.shape[1:3], batch * channels)
  rhs = jnp.repeat(jnp.transpose(flipped, (1, 2, 0)), channels, axis=-1)[:, :, None, :]
  out = lax.conv_general_dilated(
      stacked, rhs, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=batch * channels)
  return jnp.transpose(out[0].reshape(*out.shape[1:3], batch, channels), (2, 0, 1, 3))


def _fft(padded, kernels):
  """Circular FFT convolution of the padded images; the crop keeps only wrap-free outputs."""
  _, height_p, width_p, _ = padded.shape
  size = kernels.shape[-1]
  half = size // 2
  if kernels.ndim == 2:
    kernels = kernels[None]
  # Place the kernel centre at the origin so the output is aligned with the input.
  placed = jnp.zeros(kernels.shape[:1] + (height_p, width_p), padded.dtype)
  placed = placed.at[:, :size, :size].set(kernels)
  placed = jnp.roll(placed, (-half, -half), axis=(1, 2))
  image_f = jnp.fft.rfft2(padded, axes=(1, 2))
  kernel_f = jnp.fft.rfft2(placed, axes=(1, 2))[..., None]
  out = jnp.fft.irfft2(image_f * kernel_f, s=(height_p, width_p), axes=(1, 2))
  return out[:, half:height_p - half, half:width_p - half, :]


STRATEGIES = {
    "direct": _direct,
    "fft": _fft,
}


def choose_method(image_shape, kernel_shape):
  """The strategy `method="auto"` uses for these shapes."""
  del image_shape
  return "fft" if kernel_shape[-1] > 7 else "direct"


def blur(images, kernels, padding="reflect", method="auto"):
  """Convolves every image with its kernel.

  Args:
    images: `(B, H, W, C)` floating point.
    kernels: `(k, k)` shared by the batch, or `(B, k, k)` one per example; k odd.
    padding: boundary mode by numpy.pad's name: reflect, symmetric, edge, constant (zeros), wrap.
    method: "auto" or a name from `STRATEGIES`.

  Returns:
    Blurred images with the input's shape and dtype.
  """
  images = jnp.asarray(images)
  kernels = jnp.asarray(kernels)
  _validate(images, kernels, padding)
  if method == "auto":
    method = choose_method(images.shape, kernels.shape)
  if method not in STRATEGIES:
    raise ValueError(f"method must be 'auto' or one of {sorted(STRATEGIES)}, got {method!r}")
  if kernels.ndim == 3 and kernels.shape[0] == 1:
    kernels = kernels[0]
  kernels = kernels.astype(images.dtype)
  padded = _pad(images, kernels.shape[-1] // 2, padding)
  return STRATEGIES[method](padded, kernels).astype(images.dtype)
