"""CIFAR-10-C / ImageNet-C blur corruptions in JAX.

Each corruption takes `(B, H, W, C)` float images in [0, 1] and follows the reference construction
(Hendrycks & Dietterich 2019, as re-implemented by the `imagecorruptions` package) at severities
1-5, with the CIFAR-10-C or ImageNet-C parameter table. Convolutions go through `blur.blur`.

Corruption parameters are static Python numbers (they fix kernel and matrix shapes), so every
function traces under `jax.jit` with the images (and angles / PRNG keys) as the only arrays.
The functions also give corruption errors: CE, mCE and relative mCE.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels as kernels_lib

CORRUPTIONS = ("gaussian_blur", "glass_blur", "defocus_blur", "motion_blur", "zoom_blur")

# Parameter tables, severities 1..5. Source: Hendrycks & Dietterich 2019, `hendrycks/robustness`
# ImageNet-C/create_c/make_imagenet_c.py and make_cifar_c.py (the `imagecorruptions` package uses
# the ImageNet table); copied from shared/REFERENCE.md. Zoom factors are the reference's own
# `np.arange` calls so that the float factors (and so the zoomed sizes) are bit-identical.
TABLES = {
    "imagenet": {
        "gaussian_blur": (1, 2, 3, 4, 6),  # sigma
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # radius, alias_blur
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # radius, sigma
        "zoom_blur": (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                      np.arange(1, 1.21, 0.02), np.arange(1, 1.26, 0.02),
                      np.arange(1, 1.31, 0.03)),
    },
    "cifar": {
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": (np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01),
                      np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.01),
                      np.arange(1, 1.26, 0.01)),
    },
}

# Images whose shorter side is at most this use the CIFAR table by default (CIFAR is 32x32,
# ImageNet-C is 224x224).
_CIFAR_MAX_SIDE = 64

# ImageNet-C AlexNet errors averaged over severities, and its clean error. Source: Hendrycks &
# Dietterich 2019 (via shared/REFERENCE.md).
ALEXNET_ERRORS = {
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "gaussian_blur": 0.787108,
}
ALEXNET_CLEAN_ERROR = 0.4348


# ----------------------------------------------------------------------------- validation


def _check_images(images):
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must have shape (B, H, W, C), got {images.shape}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images must be floating point, got dtype {images.dtype}")
  return images


def default_table(image_shape):
  """'cifar' for small images (shorter side <= 64), else 'imagenet'."""
  return "cifar" if min(image_shape[1], image_shape[2]) <= _CIFAR_MAX_SIDE else "imagenet"


def severity_params(name, severity, image_shape, table=None):
  """The reference parameters of corruption `name` at `severity` (1..5)."""
  if name not in CORRUPTIONS:
    raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {name!r}")
  if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not (
      1 <= severity <= 5):
    raise ValueError(f"severity must be an int in 1..5, got {severity!r}")
  table = default_table(image_shape) if table is None else table
  if table not in TABLES:
    raise ValueError(f"table must be one of {sorted(TABLES)}, got {table!r}")
  return TABLES[table][name][severity - 1]


# ----------------------------------------------------------------------------- gaussian


def _gaussian(images, sigma):
  """skimage.filters.gaussian per channel: mode 'nearest' (= 'edge'), radius int(4 sigma + 0.5)."""
  radius = int(4.0 * sigma + 0.5)
  kernel = kernels_lib.gaussian(2 * radius + 1, float(sigma))
  return blur_lib.blur(images, kernel, padding="edge")


def gaussian_blur_params(images, sigma):
  """skimage-style Gaussian blur (edge padding, truncate 4) of standard deviation `sigma`."""
  images = _check_images(images)
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma!r}")
  return _gaussian_blur(images, float(sigma))


# Each corruption is jitted with its parameters static: one compilation per shape and severity
# instead of op-by-op dispatch of the kernel construction and convolution.
@functools.partial(jax.jit, static_argnames=("sigma",))
def _gaussian_blur(images, sigma):
  return jnp.clip(_gaussian(images, sigma), 0.0, 1.0)


def gaussian_blur(images, severity, table=None):
  """gaussian_blur at `severity`; `table` 'cifar' / 'imagenet' (default: by image size)."""
  images = _check_images(images)
  sigma = severity_params("gaussian_blur", severity, images.shape, table)
  return gaussian_blur_params(images, sigma)


# ----------------------------------------------------------------------------- defocus


def _defocus_grid(radius, alias_blur):
  """Validates the parameters; the reference's disk grid and smoothing size."""
  if not radius > 0:
    raise ValueError(f"radius must be > 0, got {radius!r}")
  if not alias_blur > 0:
    raise ValueError(f"alias_blur must be > 0, got {alias_blur!r}")
  if radius <= 8:
    return np.arange(-8, 8 + 1), 3
  grid = np.arange(-radius, radius + 1)
  if len(grid) % 2 == 0:
    raise ValueError(f"radius > 8 must give an odd grid like the reference's, got {radius!r}")
  return grid, 5


def defocus_kernel(radius, alias_blur):
  """The reference's aliased disk smoothed by a small Gaussian, as a `(k, k)` array.

  The disk lives on the grid arange(-8, 9) (arange(-radius, radius + 1) for radius > 8) and is
  smoothed by a 3x3 (5x5) Gaussian with OpenCV's default border, BORDER_REFLECT_101 (numpy
  'reflect'); the border matters when the disk touches the grid edge (radius 8).
  """
  grid, ksize = _defocus_grid(radius, alias_blur)
  x, y = np.meshgrid(grid, grid)
  disk = ((x**2 + y**2) <= radius**2).astype(np.float32)
  disk /= disk.sum()
  smoothing = kernels_lib.gaussian(ksize, float(alias_blur))
  disk = jnp.asarray(disk)[None, :, :, None]  # blurred as a one-channel image
  return blur_lib.blur(disk, smoothing, padding="reflect")[0, :, :, 0]


def defocus_blur_params(images, radius, alias_blur):
  """Defocus blur with the reference's disk kernel (see `defocus_kernel`)."""
  images = _check_images(images)
  _defocus_grid(radius, alias_blur)
  return _defocus_blur(images, radius, alias_blur)


@functools.partial(jax.jit, static_argnames=("radius", "alias_blur"))
def _defocus_blur(images, radius, alias_blur):
  # cv2.filter2D correlates, the kernel is symmetric so convolution is the same; its default
  # border is BORDER_REFLECT_101 = numpy 'reflect'.
  return jnp.clip(blur_lib.blur(images, defocus_kernel(radius, alias_blur), padding="reflect"),
                  0.0, 1.0)


def defocus_blur(images, severity, table=None):
  """defocus_blur at `severity`; `table` as in `gaussian_blur`."""
  images = _check_images(images)
  radius, alias_blur = severity_params("defocus_blur", severity, images.shape, table)
  return defocus_blur_params(images, radius, alias_blur)


# ----------------------------------------------------------------------------- motion


def _check_motion(radius, sigma):
  if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 1:
    raise ValueError(f"radius must be a positive int, got {radius!r}")
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma!r}")


def motion_kernel(radius, sigma, angle_degrees, image_hw):
  """The reference's one-sided motion kernels, `(..., k, k)` for angles of shape `(...)`.

  Tap i (0 <= i <= 2 radius) has weight exp(-i^2 / (2 sigma^2)) (normalized over all taps) and
  sits at row offset -ceil(i sin(angle) - 0.5), column offset -ceil(i cos(angle) - 0.5); the
  reference stops at the first tap that leaves the image, without renormalizing.
  """
  _check_motion(radius, sigma)
  height, width = image_hw
  taps = 2 * radius + 1
  i = np.arange(taps, dtype=np.float64)
  weight = np.exp(-i**2 / (2.0 * sigma**2))
  weight = jnp.asarray(weight / weight.sum(), jnp.float32)
  # Offsets can reach 2 radius; offsets beyond the image are cut by the reference anyway.
  half = min(taps - 1, min(height, width) - 1)
  theta = jnp.deg2rad(jnp.asarray(angle_degrees, jnp.float32))[..., None]
  i = jnp.arange(taps, dtype=jnp.float32)
  dy = -jnp.ceil(i * jnp.sin(theta) - 0.5)
  dx = -jnp.ceil(i * jnp.cos(theta) - 0.5)
  inside = (jnp.abs(dy) < height) & (jnp.abs(dx) < width)
  kept = jnp.cumprod(inside.astype(jnp.float32), axis=-1)  # the reference's `break`
  grid = jnp.arange(-half, half + 1, dtype=jnp.float32)
  rows = (dy[..., :, None] == grid).astype(jnp.float32)  # (..., taps, k)
  cols = (dx[..., :, None] == grid).astype(jnp.float32)
  return jnp.einsum("...t,...tr,...tc->...rc", weight * kept, rows, cols)


def motion_blur_params(images, radius, sigma, angle_degrees):
  """Motion blur at `angle_degrees` (scalar or `(B,)`); the reference shifts with edge clamping."""
  images = _check_images(images)
  angle = jnp.asarray(angle_degrees, jnp.float32)
  if angle.ndim > 1 or (angle.ndim == 1 and angle.shape[0] not in (1, images.shape[0])):
    raise ValueError(f"angle_degrees must be a scalar or have shape (B,), got {angle.shape}")
  _check_motion(radius, sigma)
  return _motion_blur(images, angle, radius, sigma)


@functools.partial(jax.jit, static_argnames=("radius", "sigma"))
def _motion_blur(images, angle, radius, sigma):
  kernel = motion_kernel(radius, sigma, angle, images.shape[1:3])
  return jnp.clip(blur_lib.blur(images, kernel, padding="edge"), 0.0, 1.0)


def random_motion_angles(key, batch):
  """Angles in degrees drawn like the reference: uniform in [-45, 45)."""
  return jax.random.uniform(key, (batch,), minval=-45.0, maxval=45.0)


def motion_blur(images, severity, angle_degrees, table=None):
  """motion_blur at `severity` and the given angle(s) in degrees; the reference draws them
  from U(-45, 45) (see `random_motion_angles`)."""
  images = _check_images(images)
  radius, sigma = severity_params("motion_blur", severity, images.shape, table)
  return motion_blur_params(images, radius, sigma, angle_degrees)


# ----------------------------------------------------------------------------- zoom


def _zoom_taps(size, factor):
  """Linear-interpolation taps of the reference's clipped zoom along one axis.

  The reference crops ceil(size / factor) central pixels, zooms them with scipy.ndimage.zoom
  (order 1: output length round(crop * factor), input coordinate j (crop - 1) / (out - 1)), and
  keeps the first `size` outputs. Returns, per output pixel, the two source pixels and the
  weight of the upper one.
  """
  crop = int(np.ceil(size / float(factor)))
  top = (size - crop) // 2
  out = int(round(crop * factor))
  scale = (crop - 1) / (out - 1) if out > 1 else 0.0
  coord = np.arange(size, dtype=np.float64) * scale
  lower = np.clip(np.floor(coord).astype(int), 0, crop - 1)
  upper = np.minimum(lower + 1, crop - 1)
  return top + lower, top + upper, coord - lower


def _zoom_axis(images, taps, axis):
  """Interpolates `(B, F, ...)` images along `axis` with per-factor taps `(F, n)`."""
  lower, upper, frac = (np.stack(t) for t in zip(*taps))
  shape = [1] * images.ndim
  shape[1], shape[axis] = lower.shape
  take = lambda index: jnp.take_along_axis(images, jnp.asarray(index.reshape(shape)), axis=axis)
  frac = jnp.asarray(frac.reshape(shape), images.dtype)
  return (1.0 - frac) * take(lower) + frac * take(upper)


def zoom_blur_params(images, factors):
  """Mean of the image and its centre zooms by each factor (each factor >= 1)."""
  images = _check_images(images)
  factors = np.asarray(factors, dtype=np.float64).reshape(-1)
  if factors.size == 0 or (factors < 1).any():
    raise ValueError(f"zoom factors must be a non-empty list of values >= 1, got {factors}")
  return _zoom_blur(images, tuple(float(f) for f in factors))


@functools.partial(jax.jit, static_argnames=("factors",))
def _zoom_blur(images, factors):
  _, height, width, _ = images.shape
  # Zoom every factor separately (a sum of separable maps is not separable), then sum:
  # two gathers per axis, (B, F, H, W, C) at most.
  stacked = jnp.broadcast_to(images[:, None], (images.shape[0], len(factors)) + images.shape[1:])
  zoomed = _zoom_axis(stacked, [_zoom_taps(height, f) for f in factors], axis=2)
  zoomed = _zoom_axis(zoomed, [_zoom_taps(width, f) for f in factors], axis=3)
  return jnp.clip((images + zoomed.sum(axis=1)) / (len(factors) + 1), 0.0, 1.0)


def zoom_blur(images, severity, table=None):
  """zoom_blur at `severity`; `table` as in `gaussian_blur`."""
  images = _check_images(images)
  return zoom_blur_params(images, severity_params("zoom_blur", severity, images.shape, table))


# ----------------------------------------------------------------------------- glass


def glass_offsets(key, batch, image_hw, max_delta, iterations):
  """Random (dx, dy) per visited pixel, drawn like the reference: integers in [-d, d)."""
  height, width = image_hw
  shape = (batch, iterations, height - 2 * max_delta, width - 2 * max_delta, 2)
  return jax.random.randint(key, shape, -max_delta, max_delta)


def _glass_source_index(offsets, image_hw, max_delta):
  """Flat source pixel of every output pixel after the reference's sequential pixel moves.

  The reference writes `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on numpy views, which copies
  x[h', w'] into x[h, w] and leaves x[h', w'] as it was; rows then columns are visited from the
  bottom-right corner inwards, so later copies can read pixels moved earlier. Tracking source
  indices instead of pixels gives the same result with one gather at the end.
  """
  height, width = image_hw
  batch, iterations, rows, cols, _ = offsets.shape
  offsets = offsets.reshape(batch, -1, 2)
  example = jnp.arange(batch)

  def step(t, index):
    within = t % (rows * cols)
    h = height - max_delta - within // cols
    w = width - max_delta - within % cols
    dx, dy = offsets[:, t, 0], offsets[:, t, 1]
    return index.at[example, h, w].set(index[example, h + dy, w + dx])

  index = jnp.arange(height * width).reshape(height, width)
  index = jnp.broadcast_to(index, (batch, height, width))
  index = jax.lax.fori_loop(0, iterations * rows * cols, step, index)
  return index.reshape(batch, -1)


def glass_blur_params(images, sigma, max_delta, iterations, key=None, offsets=None):
  """Gaussian blur, 8-bit quantization, local pixel moves within max_delta, Gaussian blur.

  Pass a PRNG `key`, or the moves themselves as `offsets` (int `(B, iterations, H - 2 d, W - 2 d,
  2)` holding (dx, dy) in the reference's visiting order, e.g. to replay the reference's draws).
  """
  images = _check_images(images)
  batch, height, width, _ = images.shape
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma!r}")
  for name, value in (("max_delta", max_delta), ("iterations", iterations)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  if 2 * max_delta >= min(height, width):
    raise ValueError(f"max_delta {max_delta} is too large for {height}x{width} images")
  expected = (batch, iterations, height - 2 * max_delta, width - 2 * max_delta, 2)
  if (key is None) == (offsets is None):
    raise ValueError("glass_blur needs exactly one of key or offsets")
  if offsets is None:
    offsets = glass_offsets(key, batch, (height, width), max_delta, iterations)
  offsets = jnp.asarray(offsets)
  if offsets.shape != expected:
    raise ValueError(f"offsets must have shape {expected}, got {offsets.shape}")
  if not isinstance(offsets, jax.core.Tracer) and (jnp.abs(offsets) > max_delta).any():
    raise ValueError(f"offsets must lie in [-{max_delta}, {max_delta}]")
  return _glass_blur(images, offsets.astype(jnp.int32), float(sigma), max_delta)


@functools.partial(jax.jit, static_argnames=("sigma", "max_delta"))
def _glass_blur(images, offsets, sigma, max_delta):
  batch, height, width, channels = images.shape
  # The reference stores the first blur as uint8 (truncating), so quantize the same way.
  quantized = jnp.floor(jnp.clip(_gaussian(images, sigma), 0.0, 1.0) * 255.0) / 255.0
  source = _glass_source_index(offsets, (height, width), max_delta)
  flat = quantized.reshape(batch, height * width, channels)
  moved = jnp.take_along_axis(flat, source[..., None], axis=1).reshape(images.shape)
  return jnp.clip(_gaussian(moved, sigma), 0.0, 1.0)


def glass_blur(images, severity, key, table=None):
  """glass_blur at `severity` with pixel moves drawn from the PRNG `key`."""
  images = _check_images(images)
  sigma, max_delta, iterations = severity_params("glass_blur", severity, images.shape, table)
  return glass_blur_params(images, sigma, max_delta, iterations, key=key)


# ----------------------------------------------------------------------------- dispatch


def corrupt(images, name, severity, *, table=None, key=None, angle_degrees=None):
  """Corruption `name` at `severity`.

  glass_blur needs `key`; motion_blur takes `angle_degrees` (scalar or `(B,)`) or, like the
  reference, draws one angle per image from `key`.
  """
  images = _check_images(images)
  if name == "glass_blur":
    if key is None:
      raise ValueError("glass_blur needs a PRNG key")
    return glass_blur(images, severity, key, table)
  if name == "motion_blur":
    if angle_degrees is None:
      if key is None:
        raise ValueError("motion_blur needs angle_degrees or a PRNG key")
      angle_degrees = random_motion_angles(key, images.shape[0])
    return motion_blur(images, severity, angle_degrees, table)
  functions = {"gaussian_blur": gaussian_blur, "defocus_blur": defocus_blur, "zoom_blur": zoom_blur}
  if name not in functions:
    raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {name!r}")
  return functions[name](images, severity, table)


# ----------------------------------------------------------------------------- corruption errors


def _errors(name, values, length=None):
  array = np.asarray(values, dtype=np.float64).reshape(-1)
  if array.size == 0 or np.isnan(array).any() or (array < 0).any() or (array > 1).any():
    raise ValueError(f"{name} must be error rates in [0, 1], got {values!r}")
  if length is not None and array.size not in (1, length):
    raise ValueError(f"{name} must have 1 or {length} values, got {array.size}")
  return array


def corruption_error(errors, baseline_errors):
  """CE_c = sum_s E_s / sum_s E^base_s.

  `errors` are one corruption's error rates per severity; `baseline_errors` the baseline's per
  severity, or one number for its mean over severities (as published for AlexNet).
  """
  errors = _errors("errors", errors)
  baseline = _errors("baseline_errors", baseline_errors, errors.size)
  if baseline.mean() == 0:
    raise ValueError("baseline_errors must not all be 0")
  return float(errors.mean() / baseline.mean())


def relative_corruption_error(errors, clean_error, baseline_errors, baseline_clean_error):
  """Relative CE_c = sum_s (E_s - E_clean) / sum_s (E^base_s - E^base_clean)."""
  errors = _errors("errors", errors)
  clean = _errors("clean_error", clean_error, 1)[0]
  baseline = _errors("baseline_errors", baseline_errors, errors.size)
  baseline_clean = _errors("baseline_clean_error", baseline_clean_error, 1)[0]
  if baseline.mean() == baseline_clean:
    raise ValueError("baseline_errors must differ from baseline_clean_error on average")
  return float((errors.mean() - clean) / (baseline.mean() - baseline_clean))


def _baseline_table(errors_by_corruption, baseline):
  if baseline is None:
    baseline = ALEXNET_ERRORS
  missing = sorted(set(errors_by_corruption) - set(baseline))
  if missing:
    raise ValueError(f"baseline has no errors for corruptions {missing}")
  if not errors_by_corruption:
    raise ValueError("errors_by_corruption must not be empty")
  return baseline


def mean_corruption_error(errors_by_corruption, baseline=None):
  """mCE: the mean CE over the given corruptions (dict name -> errors per severity).

  `baseline` maps corruption name -> errors (per severity or mean); None uses ImageNet-C's AlexNet.
  For CIFAR there is no AlexNet row: pass a baseline model's errors.
  """
  baseline = _baseline_table(errors_by_corruption, baseline)
  return float(np.mean([corruption_error(errors, baseline[name])
                        for name, errors in errors_by_corruption.items()]))


def relative_mean_corruption_error(errors_by_corruption, clean_error, baseline=None,
                                   baseline_clean_error=None):
  """Relative mCE: the mean relative CE; baseline None uses AlexNet (clean error 0.4348)."""
  if baseline is None:
    if baseline_clean_error is not None:
      raise ValueError("baseline_clean_error needs an explicit baseline")
    baseline_clean_error = ALEXNET_CLEAN_ERROR
  elif baseline_clean_error is None:
    raise ValueError("baseline_clean_error is required with an explicit baseline")
  baseline = _baseline_table(errors_by_corruption, baseline)
  return float(np.mean([
      relative_corruption_error(errors, clean_error, baseline[name], baseline_clean_error)
      for name, errors in errors_by_corruption.items()]))
