"""Justifying a kernel family: fit every family to (sharp, blurred) pairs and rank them.

Each pair gets its own kernel of the family, fitted by Adam on the family's unconstrained
parameters (several restarts, the best kept) to minimize the mean squared residual between
`blur(sharp, k)` and `blurred` over the pixels whose window lies inside the image (so the unknown
boundary handling of the blurred image does not matter). Families are ranked by the Bayesian
information criterion summed over pairs, `n log(mse) + p log(n)`, with the mean squared error
floored at 8-bit quantization noise: a residual below what the images can even represent is no
evidence for extra parameters. Free-form is the unconstrained reference: it fits best and pays for
its `size^2 - 1` parameters.

  python -m blur_adv.fit --sharp=a.png --blurred=b.png [--size=15] [--out=fit.png]
"""

import dataclasses
import functools
import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import families as families_lib
from blur_adv.ops import family_params

# Variance of uniform rounding to 1/255 steps: the floor for a meaningful residual.
QUANTIZATION_MSE = (1.0 / 255.0) ** 2 / 12.0


@dataclasses.dataclass(frozen=True)
class FamilyFit:
  family: str
  # parameter name -> (N,) fitted values in canonical form (path: "points", free-form: "logits")
  params: dict
  kernels: np.ndarray  # (N, size, size)
  mse: np.ndarray  # (N,) interior mean squared residual
  bic: float  # summed over pairs
  aic: float


def _interior(images, size):
  half = size // 2
  return images[:, half:images.shape[1] - half, half:images.shape[2] - half, :]


def _residual_mse(sharp, blurred, kernels):
  size = kernels.shape[-1]
  predicted = blur_lib.blur(sharp, kernels, padding="edge")
  return jnp.mean((_interior(predicted, size) - _interior(blurred, size)) ** 2, axis=(1, 2, 3))


@functools.partial(jax.jit, static_argnames=("family", "size", "steps", "restarts"))
def _fit_raw(sharp, blurred, family, size, steps, restarts, learning_rate):
  """Best raw parameters `(N, n)` and their residuals over `restarts` starts per pair."""
  count = sharp.shape[0]
  start = initial_raw(family, size, restarts)  # (R,) + raw shape
  raw = jnp.broadcast_to(start[:, None], (restarts, count) + start.shape[1:])
  tiled_sharp = jnp.tile(sharp, (restarts, 1, 1, 1))
  tiled_blurred = jnp.tile(blurred, (restarts, 1, 1, 1))

  def residuals(raw):
    flat = raw.reshape((restarts * count,) + raw.shape[2:])
    kernels = family_params.raw_to_kernels(family, flat, size)
    return _residual_mse(tiled_sharp, tiled_blurred, kernels).reshape(restarts, count)

  optimizer = optax.adam(learning_rate)

  def step(carry, _):
    raw, opt_state = carry
    # Each (restart, pair) has its own parameters, so the sum gives each its own gradient.
    grads = jax.grad(lambda r: jnp.sum(residuals(r)))(raw)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(raw, updates), opt_state), None

  (raw, _), _ = jax.lax.scan(step, (raw, optimizer.init(raw)), None, length=steps)
  final = residuals(raw)
  best = jnp.argmin(final, axis=0)
  pick = lambda a: jnp.take_along_axis(a, best.reshape((1, -1) + (1,) * (a.ndim - 2)), axis=0)[0]
  return pick(raw), pick(final)


def initial_raw(family, size, count):
  """`count` deterministic, spread-out starting points `(count,) + raw shape` of a family."""
  shape = family_params.raw_shape(family, size)
  if family == "free_form":
    return jnp.zeros((count,) + shape)  # the box kernel: the fit is convex from anywhere
  if family == "motion_path":
    return 0.5 * jax.random.normal(jax.random.PRNGKey(0), (count,) + shape)
  fraction = (np.arange(count) + 0.5) / count
  columns = []
  for i, name in enumerate(families_lib.PARAMETERS[family]):
    # Parameters cycle at different rates so that restarts cover their combinations.
    cycled = np.roll(fraction, i * max(1, count // 3))
    # Angles: raw 1 is 180 degrees; sizes: sigmoid(+-2) spans 12% to 88% of the range.
    columns.append(cycled if name == "angle" else 4.0 * cycled - 2.0)
  return jnp.asarray(np.stack(columns, axis=-1), jnp.float32)


def _check_pairs(sharp, blurred, size):
  if sharp.shape != blurred.shape or sharp.ndim != 4:
    raise ValueError(f"sharp and blurred must both be (N, H, W, C), got {sharp.shape} and "
                     f"{blurred.shape}")
  if size < 3 or size % 2 == 0 or size >= min(sharp.shape[1:3]):
    raise ValueError(f"size must be odd, >= 3 and smaller than the images, got {size}")


def fit_family(sharp, blurred, family, size, steps=300, restarts=6, learning_rate=0.05):
  """Fits one family to every pair; returns a `FamilyFit`."""
  sharp = jnp.asarray(sharp, jnp.float32)
  blurred = jnp.asarray(blurred, jnp.float32)
  family_params.check_family(family)
  _check_pairs(sharp, blurred, size)
  if family == "free_form":
    restarts, learning_rate = 1, max(learning_rate, 0.1)  # convex in the kernel: one start
  raw, mse = _fit_raw(sharp, blurred, family, size, steps, restarts, learning_rate)
  kernels = np.asarray(family_params.raw_to_kernels(family, raw, size))
  params = family_params.canonical(family, family_params.to_params(family, raw, size))
  mse = np.asarray(mse, np.float64)
  n = np.prod(_interior(sharp, size).shape[1:])
  dof = family_params.degrees_of_freedom(family, size)
  log_likelihood_term = n * np.log(np.maximum(mse, QUANTIZATION_MSE))
  return FamilyFit(family=family, params=params, kernels=kernels, mse=mse,
                   bic=float(np.sum(log_likelihood_term + dof * np.log(n))),
                   aic=float(np.sum(log_likelihood_term + 2 * dof)))


def rank_families(sharp, blurred, size, families=families_lib.FAMILIES, **fit_kwargs):
  """Fits every family and returns the fits sorted by BIC, best first."""
  fits = [fit_family(sharp, blurred, family, size, **fit_kwargs) for family in families]
  return sorted(fits, key=lambda fit: fit.bic)


def format_ranking(fits):
  """A markdown table: rank, family, mean residual, BIC, AIC, first pair's parameters."""
  lines = ["| rank | family | mean MSE | BIC | AIC | parameters (pair 0) |",
           "|---|---|---|---|---|---|"]
  for rank, fit in enumerate(fits, 1):
    shown = ", ".join(f"{k}={float(v[0]):.3f}" for k, v in fit.params.items() if v.ndim == 1)
    lines.append(f"| {rank} | {fit.family} | {fit.mse.mean():.3g} | {fit.bic:.1f} | "
                 f"{fit.aic:.1f} | {shown or '-'} |")
  return "\n".join(lines)


def plot_ranking(fits, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(1, len(fits), figsize=(2.4 * len(fits), 2.8))
  for axis, fit in zip(np.atleast_1d(axes), fits):
    axis.imshow(fit.kernels[0], cmap="magma")
    axis.set_title(f"{fit.family}\nMSE {fit.mse[0]:.2g}", fontsize=8)
    axis.axis("off")
  figure.tight_layout()
  figure.savefig(path, dpi=90)
  plt.close(figure)


def load_images(path):
  """One image file, or every image in a folder (sorted by name), as `(N, H, W, C)` in [0, 1]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if os.path.isdir(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")))
  else:
    files = [path]
  if not files:
    raise ValueError(f"no images found at {path!r}")
  arrays = [np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f in files]
  return np.stack(arrays)


def run():
  """The command line; its flags are defined here, so importing this module defines none."""
  key = dict(module_name=sys.argv[0])  # So --help lists them, also behind blur_adv/fit.py.
  sharp = flags.DEFINE_string("sharp", None, "Sharp image file or folder.", **key)
  blurred = flags.DEFINE_string("blurred", None,
                                "Blurred image file or folder (same names/order).", **key)
  size = flags.DEFINE_integer("size", 15, "Odd kernel size to fit.", **key)
  steps = flags.DEFINE_integer("steps", 300, "Adam steps per family.", **key)
  families = flags.DEFINE_list("families", list(families_lib.FAMILIES), "Families to fit.", **key)
  out = flags.DEFINE_string("out", "fit.png", "Picture of the fitted kernels (pair 0).", **key)

  def main(argv):
    del argv
    if not sharp.value or not blurred.value:
      raise app.UsageError("--sharp and --blurred are required")
    fits = rank_families(load_images(sharp.value), load_images(blurred.value), size.value,
                         families=families.value, steps=steps.value)
    print(format_ranking(fits))
    plot_ranking(fits, out.value)
    print(f"wrote {out.value}")

  app.run(main)


if __name__ == "__main__":
  run()
