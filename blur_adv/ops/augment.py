"""Blur augmentation: a random kernel family and severity per example, applied in one `blur` call.

Everything is a pure function of a PRNG key. `size`, `families`, `ranges` and `padding` fix shapes
and the trace, so pass them as Python values (static arguments or a `functools.partial`); the
images, the key and `probability` may be traced.

Default severity ranges (`default_ranges(size)`) are in each family's own parameters. They were
chosen at kernel size 7 (the usual choice for 32x32 images) so that `measures.kernel_spread` spans
about the CIFAR-10-C blur severities 1-5, whose kernels have spreads (px^2) of
gaussian_blur 0.32-2.0, defocus_blur 0.16-1.33, motion_blur 0.44-2.5:

  gaussian        sigma 0.4-1.1                         spread 0.32-2.4
  anisotropic     sigma_u 0.5-1.4, sigma_v 0.2-0.7      spread 0.22-2.4
  defocus         radius 0.6-1.8                        spread 0.29-1.8
  motion          length 1.5-5.5                        spread 0.4-2.9 (depends a little on angle)
  box             width 1.5-3.5                         spread 0.67-2.3

For other sizes the upper ends scale with the kernel's half-width (`size // 2 / 3`), so the
strongest blur still roughly fills the window, while the mild ends stay put (at most half the
upper end, so tiny kernels keep a non-empty range). Angles are uniform over [0, pi): every
family here is point-symmetric, so that covers all orientations.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import families as families_lib
from blur_adv.ops import kernels as kernels_lib

# (low, high) at kernel size 7, in each family's own parameters; see the module docstring.
_BASE_SIZE = 7
_BASE_RANGES = {
    "gaussian": {"sigma": (0.4, 1.1)},
    "anisotropic_gaussian": {"sigma_u": (0.5, 1.4), "sigma_v": (0.2, 0.7), "angle": (0.0, math.pi)},
    "defocus": {"radius": (0.6, 1.8)},
    "motion": {"length": (1.5, 5.5), "angle": (0.0, math.pi)},
    "box": {"width": (1.5, 3.5)},
}


def _check_size(size):
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3 or size % 2 == 0:
    raise ValueError(f"size must be an odd int >= 3, got {size!r}")


def _check_families(families):
  if isinstance(families, str) or len(families) == 0:
    raise ValueError(f"families must be a non-empty sequence of names, got {families!r}")
  for name in families:
    if name not in _BASE_RANGES:  # the parametric families with default ranges here
      raise ValueError(f"families: unknown family {name!r}, expected one of "
                       f"{sorted(_BASE_RANGES)}")


def default_ranges(size, families=tuple(_BASE_RANGES)):
  """Per-family `{param: (low, high)}` severity ranges for kernels of `size` (module docstring)."""
  _check_size(size)
  _check_families(families)
  scale = (size // 2) / (_BASE_SIZE // 2)
  ranges = {}
  for family in families:
    ranges[family] = {}
    for param, (low, high) in _BASE_RANGES[family].items():
      if param != "angle":
        high = high * scale
        low = min(low, high / 2)
      ranges[family][param] = (low, high)
  return ranges


def resolve_ranges(size, families, ranges):
  """Defaults overridden by `ranges`, checked: every parameter present, 0 <= low <= high."""
  resolved = default_ranges(size, families)
  for family, params in (ranges or {}).items():
    if family not in families:
      raise ValueError(f"ranges: family {family!r} is not among families {tuple(families)}")
    for param, bounds in params.items():
      if param not in resolved[family]:
        raise ValueError(f"ranges[{family!r}]: unknown parameter {param!r}, expected one of "
                         f"{families_lib.PARAMETERS[family]}")
      low, high = (float(b) for b in bounds)
      if not (low <= high) or (param != "angle" and low < 0):
        raise ValueError(f"ranges[{family!r}][{param!r}] must be (low, high) with "
                         f"0 <= low <= high, got {bounds!r}")
      resolved[family][param] = (low, high)
  return resolved


def random_kernels(rng, batch, size, families=families_lib.DEFAULT_AUGMENT_FAMILIES, ranges=None,
                   family_weights=None):
  """A random kernel per example: family drawn by `family_weights`, parameters uniform in range.

  Args:
    rng: PRNG key.
    batch: number of kernels (static int).
    size: odd kernel size (static).
    families: names from `families_lib.PARAMETERS` (static).
    ranges: optional `{family: {param: (low, high)}}` overriding `default_ranges(size)`.
    family_weights: optional relative probabilities of the families (default uniform).

  Returns:
    `(batch, size, size)` non-negative kernels that sum to 1.
  """
  _check_size(size)
  families = tuple(families)
  _check_families(families)
  resolved = resolve_ranges(size, families, ranges)
  if family_weights is None:
    family_weights = np.ones(len(families))
  family_weights = np.asarray(family_weights, np.float64)
  if family_weights.shape != (len(families),) or (family_weights < 0).any() or not (
      family_weights.sum() > 0):
    raise ValueError(f"family_weights must be {len(families)} non-negative numbers with a "
                     f"positive sum, got {family_weights.tolist()}")
  # One flat uniform draw feeds the family choice and every parameter: under jax's default
  # (partitionable) threefry each draw site costs compile time, and multi-dimensional draws
  # cost seconds on CPU.
  names = [(family, name) for family in families for name in families_lib.PARAMETERS[family]]
  uniform = jax.random.uniform(rng, ((1 + len(names)) * batch,)).reshape(1 + len(names), batch)
  # Inverse-CDF sampling of the family (a zero weight is never chosen).
  cdf = jnp.asarray(np.cumsum(family_weights) / family_weights.sum(), jnp.float32)
  choice = jnp.minimum(jnp.searchsorted(cdf, uniform[0], side="right"), len(families) - 1)
  params = {}
  for (family, name), u in zip(names, uniform[1:]):
    low, high = resolved[family][name]
    params[family, name] = low + (high - low) * u
  # Build every family's kernel for every example (cheap: B x F small kernels) and select, so
  # the batch is blurred by a single per-example `blur` call.
  candidates = []
  for family in families:
    fn, param_names = kernels_lib.PARAMETRIC_FAMILIES[family]
    candidates.append(fn(size, *[params[family, n] for n in param_names]))
  stacked = jnp.stack(candidates)  # (F, B, k, k)
  return stacked[choice, jnp.arange(batch)]


def _check_probability(probability):
  if isinstance(probability, jax.core.Tracer):
    return
  value = np.asarray(probability, np.float64)
  if value.ndim != 0 or not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"probability must be a scalar in [0, 1], got {probability!r}")


def augment(rng, images, probability, size=7, families=families_lib.DEFAULT_AUGMENT_FAMILIES,
            ranges=None, family_weights=None, padding="reflect", return_kernels=False):
  """Blurs each example with probability `probability` by a kernel from `random_kernels`.

  Examples that are not blurred get the identity kernel, so the whole batch is one `blur` call.
  Returns the `(B, H, W, C)` images, and the `(B, size, size)` kernels used when
  `return_kernels` is true.
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must have shape (B, H, W, C), got {images.shape}")
  _check_probability(probability)
  batch = images.shape[0]
  kernel_key, apply_key = jax.random.split(rng)
  kernels = random_kernels(kernel_key, batch, size, families, ranges, family_weights)
  apply = jax.random.bernoulli(apply_key, probability, (batch,))
  kernels = jnp.where(apply[:, None, None], kernels, kernels_lib.identity(size))
  out = blur_lib.blur(images, kernels, padding=padding)
  return (out, kernels) if return_kernels else out
