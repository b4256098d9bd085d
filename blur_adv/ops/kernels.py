"""Parameterized, differentiable blur kernel families.

Every family returns non-negative `(..., size, size)` kernels that sum to 1, where `...` is the
broadcast shape of its parameters, so one call builds a kernel per example. `size` is a static odd
int; the kernel's centre is at `[size // 2, size // 2]`.

Geometry: column offsets `x` grow to the right, row offsets grow downwards, and angles are measured
in radians counter-clockwise from the +x axis as the image is displayed (so `y = -row offset`).

Kernels are built from smooth or piecewise-linear "coverage" functions rather than hard masks so
that every continuous parameter has a useful gradient: the disk and box have an anti-aliased edge
one pixel wide, lines and paths are splatted with bilinear weights.
"""

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import families

# Smallest sigma used inside the Gaussians: keeps 1 / sigma^2 finite at sigma = 0, where the
# kernel is (numerically) the identity anyway.
_MIN_SIGMA = 1e-4


def _check_size(size):
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
    raise ValueError(f"size must be a positive odd int, got {size!r}")


def _check_param(name, value, minimum=0.0):
  """Rejects NaN or too-small parameters when they are concrete (outside jit)."""
  if isinstance(value, jax.core.Tracer):
    return
  array = np.asarray(value, dtype=np.float64)
  if np.isnan(array).any():
    raise ValueError(f"{name} must not be NaN, got {value!r}")
  if (array < minimum).any():
    raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _offsets(size):
  """Column offsets x and upward offsets y of every tap, each `(size, size)`."""
  half = size // 2
  r = jnp.arange(-half, half + 1, dtype=jnp.float32)
  x = jnp.broadcast_to(r[None, :], (size, size))
  y = jnp.broadcast_to(-r[:, None], (size, size))
  return x, y


def _expand(value):
  """Adds two trailing axes so a batch of parameters broadcasts against the tap grid."""
  return jnp.asarray(value, dtype=jnp.float32)[..., None, None]


def _normalize(weights):
  return weights / jnp.sum(weights, axis=(-2, -1), keepdims=True)


def _softmax2d(logits):
  shape = logits.shape
  flat = jax.nn.softmax(logits.reshape(shape[:-2] + (-1,)), axis=-1)
  return flat.reshape(shape)


def identity(size):
  """The kernel that leaves an image unchanged."""
  _check_size(size)
  return jnp.zeros((size, size), jnp.float32).at[size // 2, size // 2].set(1.0)


def gaussian(size, sigma):
  """Isotropic Gaussian of standard deviation `sigma` pixels (sigma = 0 is the identity)."""
  _check_size(size)
  _check_param("sigma", sigma)
  return anisotropic_gaussian(size, sigma, sigma, 0.0)


def anisotropic_gaussian(size, sigma_u, sigma_v, angle):
  """Gaussian with std `sigma_u` along direction `angle` and `sigma_v` across it."""
  _check_size(size)
  _check_param("sigma_u", sigma_u)
  _check_param("sigma_v", sigma_v)
  _check_param("angle", angle, minimum=-np.inf)
  x, y = _offsets(size)
  angle = _expand(angle)
  u = x * jnp.cos(angle) + y * jnp.sin(angle)
  v = -x * jnp.sin(angle) + y * jnp.cos(angle)
  su = jnp.maximum(_expand(sigma_u), _MIN_SIGMA)
  sv = jnp.maximum(_expand(sigma_v), _MIN_SIGMA)
  # A softmax of the log-density normalizes without overflow even for tiny sigmas.
  return _softmax2d(-0.5 * ((u / su) ** 2 + (v / sv) ** 2))


def defocus(size, radius):
  """Uniform disk of `radius` pixels (out-of-focus blur) with a one-pixel anti-aliased edge.

  A disk of radius <= 0.5 fits inside the centre pixel, so it is the identity.
  """
  _check_size(size)
  _check_param("radius", radius)
  x, y = _offsets(size)
  distance = jnp.sqrt(x**2 + y**2)
  coverage = jnp.clip(_expand(radius) + 0.5 - distance, 0.0, 1.0)
  return _normalize(coverage)


def box(size, width):
  """Square box filter `width` pixels wide with anti-aliased edges (width <= 1 is the identity)."""
  _check_size(size)
  _check_param("width", width)
  half = size // 2
  r = jnp.abs(jnp.arange(-half, half + 1, dtype=jnp.float32))
  profile = jnp.clip(_expand(width)[..., 0] / 2 + 0.5 - r, 0.0, 1.0)  # (..., size)
  return _normalize(profile[..., :, None] * profile[..., None, :])


def _splat_path(size, points, samples_per_segment):
  """Bilinearly splats points spread uniformly along a polyline; weights follow arc length."""
  start, end = points[..., :-1, :], points[..., 1:, :]  # (..., S, 2)
  t = (jnp.arange(samples_per_segment, dtype=jnp.float32) + 0.5) / samples_per_segment
  samples = start[..., None, :] + t[:, None] * (end - start)[..., None, :]  # (..., S, T, 2)
  length = jnp.sqrt(jnp.sum((end - start) ** 2, axis=-1) + 1e-12)  # (..., S)
  # A tiny floor keeps zero-length paths (all points equal) well defined: they give a dot.
  weight = jnp.broadcast_to((length + 1e-6)[..., None], samples.shape[:-1])
  samples = samples.reshape(samples.shape[:-3] + (-1, 2))
  weight = weight.reshape(weight.shape[:-2] + (-1,))
  half = size // 2
  grid = jnp.arange(-half, half + 1, dtype=jnp.float32)
  # Sample coordinates are clamped to the window so the kernel never loses all its mass.
  px = jnp.clip(samples[..., 0], -half, half)
  py = jnp.clip(samples[..., 1], -half, half)
  wx = jnp.maximum(0.0, 1.0 - jnp.abs(grid - px[..., None]))  # (..., N, size) columns
  wy = jnp.maximum(0.0, 1.0 - jnp.abs(-grid - py[..., None]))  # (..., N, size) rows, y upwards
  kernel = jnp.einsum("...n,...nr,...nc->...rc", weight, wy, wx)
  return _normalize(kernel)


def motion_path(size, points):
  """Camera-shake blur along the polyline through `points` (`(..., N, 2)` as (x, y) pixels).

  Points are offsets from the kernel centre; the exposure is spread uniformly over the path's
  arc length. Points outside the window are clamped to its border.
  """
  _check_size(size)
  points = jnp.asarray(points, dtype=jnp.float32)
  if points.ndim < 2 or points.shape[-1] != 2 or points.shape[-2] < 2:
    raise ValueError(f"points must have shape (..., N >= 2, 2), got {points.shape}")
  _check_param("points", points, minimum=-np.inf)
  return _splat_path(size, points, samples_per_segment=4 * size)


def motion(size, length, angle):
  """Linear motion blur: a centred segment `length` pixels long at `angle` radians."""
  _check_size(size)
  _check_param("length", length)
  _check_param("angle", angle, minimum=-np.inf)
  length = jnp.asarray(length, jnp.float32)
  angle = jnp.asarray(angle, jnp.float32)
  half = 0.5 * length
  direction = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
  direction = jnp.broadcast_to(direction, jnp.broadcast_shapes(length.shape, angle.shape) + (2,))
  endpoints = jnp.stack([-half[..., None] * direction, half[..., None] * direction], axis=-2)
  return _splat_path(size, endpoints, samples_per_segment=4 * size)


def free_form(logits):
  """Arbitrary kernel on the probability simplex: the softmax of a `(..., size, size)` map."""
  logits = jnp.asarray(logits)
  if logits.ndim < 2 or logits.shape[-1] != logits.shape[-2]:
    raise ValueError(f"logits must have shape (..., size, size), got {logits.shape}")
  _check_size(logits.shape[-1])
  _check_param("logits", logits, minimum=-np.inf)
  return _softmax2d(logits)


# Each parametric family's builder (the function of the family's name) and its continuous
# parameters in call order; the fitter, the attacks and the adversary treat every family alike.
PARAMETRIC_FAMILIES = {name: (globals()[name], parameters)
                       for name, parameters in families.PARAMETERS.items()}


# --- Separable families as 1-D factors --------------------------------------------------------
# `blur.blur(images, blur.Separable(column, row))` convolves with `column[:, None] * row[None, :]`
# in two 1-D passes (k + k taps per pixel instead of k * k). Each function returns
# `(column, row)`, each `(..., size)` and summing to 1, whose outer product equals the 2-D kernel
# of the family above (up to float rounding).


def _gaussian_profile(size, sigma):
  """Normalized 1-D Gaussian over the taps -size//2..size//2, `(..., size)`."""
  half = size // 2
  r = jnp.arange(-half, half + 1, dtype=jnp.float32)
  sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32)[..., None], _MIN_SIGMA)
  return jax.nn.softmax(-0.5 * (r / sigma) ** 2, axis=-1)


def axis_aligned_gaussian_factors(size, sigma_x, sigma_y):
  """Factors of `anisotropic_gaussian(size, sigma_x, sigma_y, 0.0)`: std sigma_x along rows of
  pixels (horizontal), sigma_y down the columns (vertical)."""
  _check_size(size)
  _check_param("sigma_x", sigma_x)
  _check_param("sigma_y", sigma_y)
  shape = jnp.broadcast_shapes(jnp.shape(sigma_x), jnp.shape(sigma_y))
  column = jnp.broadcast_to(_gaussian_profile(size, sigma_y), shape + (size,))
  row = jnp.broadcast_to(_gaussian_profile(size, sigma_x), shape + (size,))
  return column, row


def gaussian_factors(size, sigma):
  """Factors of `gaussian(size, sigma)`."""
  _check_size(size)
  _check_param("sigma", sigma)
  return axis_aligned_gaussian_factors(size, sigma, sigma)


def box_factors(size, width):
  """Factors of `box(size, width)`."""
  _check_size(size)
  _check_param("width", width)
  half = size // 2
  r = jnp.abs(jnp.arange(-half, half + 1, dtype=jnp.float32))
  profile = jnp.clip(_expand(width)[..., 0] / 2 + 0.5 - r, 0.0, 1.0)
  profile = profile / jnp.sum(profile, axis=-1, keepdims=True)
  return profile, profile
