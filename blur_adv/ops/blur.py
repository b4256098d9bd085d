"""Applying blur kernels to batches of images.

`blur(images, kernels)` is a mathematical convolution (the kernel is flipped), so on every channel
it equals `scipy.ndimage.convolve` with the matching boundary mode. Kernels are shared by the whole
batch (`(k, k)`) or given one per example (`(B, k, k)`); every channel uses the same kernel.

Kernels of a separable family (Gaussian, box, axis-aligned anisotropic Gaussian) can be passed as
`Separable(column, row)` 1-D factors (see `kernels.gaussian_factors` and friends, or use
`blur_separable`), which is much cheaper.

Several strategies compute the same result (see `blur_strategies`); `method="auto"` picks one from
the shapes, and a user can force any strategy by name (e.g. to compare them, or on a GPU/TPU where
"direct" may be faster); every strategy accepts dense and `Separable` kernels.

`auto` per backend, and why:
  CPU (float32, k <= 31, C++ compiler present): "native", the C++ loops; they beat every pure-JAX
    strategy at every measured shape (see `choose_method`).
  GPU, TPU, and CPU without the loops: the pure-JAX rule below (`_pure_jax_method`): `Separable`
    -> "separable"; dense k <= 7 -> "shift"; dense k >= 9 -> "fft". It was measured on XLA:CPU
    only. Its reasoning carries to GPUs (fused elementwise passes are memory-bound and cheap,
    cuFFT is fast) but is a guess for TPUs, where FFTs are slow and convolutions native, so
    "direct" (grouped `lax.conv`) may beat "fft" for dense k >= 9. Check it on the hardware with
    `python benchmarks/blur_bench.py --backend=gpu` (or tpu): it times every strategy on every
    shape, separable blur followed by a reduction included, next to what `auto` picks.
"""

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import blur_strategies as strategies
from blur_adv.ops import native as native_lib
from blur_adv.ops.blur_strategies import Separable

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


# The pure-JAX part of the `auto` rule, measured on 2 CPU cores (per-example kernels, B=256
# 32x32x3 at k = 5..11 and 31, B=32 224x224x3 at k = 15, 31; interleaved timings of
# benchmarks/blur_bench.py):
#   * separable kernels (given as `Separable` factors): two 1-D passes, 2k taps per pixel, beat
#     every dense method at every k;
#   * dense k <= 7: k*k shifted multiply-adds in one fused loop beat the FFT's fixed cost (at k = 9
#     they tie);
#   * dense k >= 9: FFTs, whose cost hardly grows with k.
# Under differentiation "shift" and "separable" switch to FFTs for the value and the kernel
# gradient (see blur_strategies.fft_when_differentiated), so the rule only trades forward speed.
# The image size does not enter: in the measured range the per-pixel costs barely depend on it.
SHIFT_MAX_SIZE = 7
# Kernels up to this size use the C++ loops on CPU when they are available (see `choose_method`).
NATIVE_MAX_SIZE = 31


def _pure_jax_method(kernel_shape, separable):
  if separable:
    return "separable"
  return "shift" if kernel_shape[-1] <= SHIFT_MAX_SIZE else "fft"


def _pure_jax_auto(padded, kernels):
  """The pure-JAX choice; also what "native" computes off CPU and for non-float32 images."""
  method = _pure_jax_method(_kernel_shape(kernels), isinstance(kernels, Separable))
  return STRATEGIES[method](padded, kernels)


# Every strategy computes the same convolution (see blur_strategies); tests force each by name.
STRATEGIES = {
    "direct": strategies.direct,
    "fft": strategies.fft,
    "shift": strategies.shift,
    "separable": strategies.separable,
    "native": strategies.native_or(_pure_jax_auto),
}


def choose_method(image_shape, kernel_shape, separable=False):
  """The strategy `method="auto"` uses for these shapes.

  On a CPU backend, when the C++ loops could be built, kernels up to `NATIVE_MAX_SIZE` (dense or
  `Separable`) use them ("native"): on XLA:CPU they beat the pure-JAX choice at every shape of
  benchmarks/blur_bench.py, e.g. forward 2.2x (k = 31, 32 px) and 1.5x (k = 31, 224 px),
  forward+gradient 10x (k = 5), timed with and without the loops on 2 CPU cores. Otherwise the
  pure-JAX rule above.
  """
  del image_shape
  if (kernel_shape[-1] <= NATIVE_MAX_SIZE and jax.default_backend() == "cpu" and
      native_lib.available()):
    return "native"
  return _pure_jax_method(kernel_shape, separable)


def _validate_factors(images, kernels, padding):
  """Checks a `Separable` kernel; returns it with both factors `(k,)`, or both `(B, k)`."""
  column, row = (jnp.asarray(factor) for factor in kernels)
  if column.ndim not in (1, 2) or row.ndim not in (1, 2) or column.shape[-1] != row.shape[-1]:
    raise ValueError(f"Separable factors must have shapes (k,) or (B, k) with the same k, "
                     f"got column {column.shape} and row {row.shape}")
  batch = jnp.broadcast_shapes(column.shape[:-1], row.shape[:-1])
  size = column.shape[-1]
  # A zero-memory dense stand-in reuses the dense checks and their messages.
  _validate(images, np.broadcast_to(np.float32(0), batch + (size, size)), padding)
  return Separable(*(jnp.broadcast_to(f, batch + (size,)) for f in (column, row)))


def blur(images, kernels, padding="reflect", method="auto"):
  """Convolves every image with its kernel.

  Args:
    images: `(B, H, W, C)` floating point.
    kernels: `(k, k)` shared by the batch, or `(B, k, k)` one per example; k odd. Or a
      `Separable(column, row)` of 1-D factors, each `(k,)` or `(B, k)` (e.g. from
      `kernels.gaussian_factors`), which lets `auto` use the much cheaper separable strategy.
    padding: boundary mode by numpy.pad's name: reflect, symmetric, edge, constant (zeros), wrap.
    method: "auto" or a name from `STRATEGIES`. On CPU "auto" usually means "native", which is
      differentiable in reverse mode only (first order); for `jax.jvp` or second derivatives
      force a pure-JAX strategy such as "fft".

  Returns:
    Blurred images with the input's shape and dtype.
  """
  images = jnp.asarray(images)
  if isinstance(kernels, Separable):
    kernels = _validate_factors(images, kernels, padding)
  else:
    kernels = jnp.asarray(kernels)
    _validate(images, kernels, padding)
  if method == "auto":
    method = choose_method(images.shape, _kernel_shape(kernels), isinstance(kernels, Separable))
  if method not in STRATEGIES:
    raise ValueError(f"method must be 'auto' or one of {sorted(STRATEGIES)}, got {method!r}")
  dtype = strategies.compute_dtype(images.dtype)
  if isinstance(kernels, Separable):
    kernels = Separable(*(
        (f[0] if f.ndim == 2 and f.shape[0] == 1 else f).astype(dtype) for f in kernels))
  else:
    if kernels.ndim == 3 and kernels.shape[0] == 1:
      kernels = kernels[0]
    kernels = kernels.astype(dtype)
  if method == "native":  # the loops pad as they go
    out = strategies.native_blur(images.astype(dtype), kernels, padding, _pure_jax_auto)
    return out.astype(images.dtype)
  padded = strategies.pad_images(images.astype(dtype), _kernel_shape(kernels)[-1] // 2, padding)
  return STRATEGIES[method](padded, kernels).astype(images.dtype)


def blur_separable(images, column_kernels, row_kernels, padding="reflect", method="auto"):
  """`blur` with the kernel `column (x) row` given by its 1-D factors, each `(k,)` or `(B, k)`."""
  return blur(images, Separable(column_kernels, row_kernels), padding=padding, method=method)


def _kernel_shape(kernels):
  """The dense shape, `(k, k)` or `(B, k, k)`, of a dense or `Separable` kernel."""
  if isinstance(kernels, Separable):
    return kernels.column.shape + kernels.column.shape[-1:]
  return kernels.shape
