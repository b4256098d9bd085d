"""SSIM budget: which blurs count as admissible, and projecting kernels onto the admissible set.

A blurred image is admissible when `ssim(x, blur(x, k)) >= 1 - budget`, budget in (0, 1]. Any
kernel k is made admissible by blending it with the identity, `alpha k + (1 - alpha) id`: alpha = 0
gives the image itself (SSIM 1), and alpha is found by a fixed number of bisection steps (so it
jits), always keeping the admissible end of the bracket: zero violations by construction.

Blurring is linear in the kernel, so the blend's image is `alpha blur(x, k) + (1 - alpha) x`: one
blur per call, however many bisection steps. Gradients flow through the blended kernel (and the
blurred image) with alpha treated as a constant (`stop_gradient`): alpha is a projection step,
not something to differentiate through.
"""

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import measures

DEFAULT_BISECTION_STEPS = 12  # alpha to within 2^-12 of the admissible boundary

# The bisection demands SSIM >= 1 - budget + this margin, so that recomputing the SSIM of the
# result elsewhere (another fusion, re-blurring with the blended kernel: ~1e-6 float32 noise)
# still finds it admissible. The clean image (alpha = 0) is accepted without a check.
SAFETY_MARGIN = 1e-5


def check_budget(budget, batch):
  """Budget as a float32 `(batch,)` array; concrete values must lie in (0, 1]."""
  budget = jnp.asarray(budget, jnp.float32)
  if budget.ndim > 1 or (budget.ndim == 1 and budget.shape[0] not in (1, batch)):
    raise ValueError(f"budget must be a scalar or have shape ({batch},), got {budget.shape}")
  if not isinstance(budget, jax.core.Tracer):
    values = np.asarray(budget)
    if np.isnan(values).any() or (values <= 0).any() or (values > 1).any():
      raise ValueError(f"budget must lie in (0, 1], got {values}")
  return jnp.broadcast_to(budget, (batch,))


def _check_steps(steps):
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
    raise ValueError(f"steps must be a non-negative int, got {steps!r}")


def direct_ssim(x, y):
  """`measures.ssim`, but as `ssim_fn` it makes the bisection re-filter the blend at every step.

  The reference (and the previous implementation) for the default, moment-based bisection.
  """
  return measures.ssim(x, y)


def _blend_ssim(images, blurred, ssim_fn):
  """`alpha -> ssim_fn(images, alpha blurred + (1 - alpha) images)`, `(B,)` alphas."""
  if ssim_fn is measures.ssim:
    # The blend is x + alpha (blurred - x): filter its local moments once, not per step.
    return measures.ssim_along_blend(images, blurred - images)

  def at(alpha):
    a = alpha[:, None, None, None]
    return ssim_fn(images, a * blurred + (1.0 - a) * images)
  return at


def admissible_alpha(images, blurred, budget, steps=DEFAULT_BISECTION_STEPS, ssim_fn=measures.ssim):
  """Largest alpha in [0, 1] (to bisection precision) with `alpha blurred + (1 - alpha) images`
  admissible, per example, `(B,)`; no gradient.

  alpha = 1 when `blurred` itself is admissible; otherwise the lower end of the final bracket,
  which was checked admissible with `SAFETY_MARGIN` to spare (alpha = 0, the clean image, is
  admissible for any budget > 0). With the default `measures.ssim` the SSIM of every candidate
  comes from local moments filtered once (`measures.ssim_along_blend`); any other `ssim_fn`
  (e.g. `direct_ssim`) is evaluated on the blended images at every step.
  """
  _check_steps(steps)
  images = jax.lax.stop_gradient(jnp.asarray(images))
  blurred = jax.lax.stop_gradient(jnp.asarray(blurred))
  threshold = 1.0 - check_budget(budget, images.shape[0]) + SAFETY_MARGIN
  blend_ssim = _blend_ssim(images, blurred, ssim_fn)

  def admissible(alpha):
    return blend_ssim(alpha) >= threshold

  def bisect(_, bracket):
    low, high = bracket
    middle = 0.5 * (low + high)
    ok = admissible(middle)
    return jnp.where(ok, middle, low), jnp.where(ok, high, middle)

  ones = jnp.ones(images.shape[:1], jnp.float32)
  low, _ = jax.lax.fori_loop(0, steps, bisect, (jnp.zeros_like(ones), ones))
  return jnp.where(admissible(ones), ones, low)


def blend(kernels, alpha):
  """`alpha k + (1 - alpha) id` per example; alpha is held constant for gradients."""
  alpha = jax.lax.stop_gradient(jnp.asarray(alpha, kernels.dtype))[:, None, None]
  identity = kernels_lib.identity(kernels.shape[-1]).astype(kernels.dtype)
  return alpha * kernels + (1.0 - alpha) * identity


def _per_example(kernels, batch):
  kernels = jnp.asarray(kernels)
  if kernels.ndim == 2:
    kernels = kernels[None]
  if kernels.ndim != 3 or kernels.shape[0] not in (1, batch):
    raise ValueError(f"kernels must have shape (k, k) or ({batch}, k, k), got {kernels.shape}")
  return jnp.broadcast_to(kernels, (batch,) + kernels.shape[1:])


def make_admissible(images, kernels, budget, steps=DEFAULT_BISECTION_STEPS, padding="reflect",
                    ssim_fn=measures.ssim, return_images=False):
  """Per-example admissible kernels `(B, k, k)` (and, optionally, the blurred images).

  Args:
    images: `(B, H, W, C)` floats in [0, 1].
    kernels: `(k, k)` or `(B, k, k)`, each summing to 1.
    budget: scalar or `(B,)` in (0, 1]: admissible means SSIM >= 1 - budget.
    steps: bisection steps (static).
    padding: boundary mode of `blur.blur`.
    ssim_fn: `(x, y) -> (B,)` similarity; `measures.ssim` by default.
    return_images: also return `alpha blur(x, k) + (1 - alpha) x`, the blend's blurred images
      (equal to blurring with the returned kernels, without a second convolution).
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must have shape (B, H, W, C), got {images.shape}")
  kernels = _per_example(kernels, images.shape[0])
  budget = check_budget(budget, images.shape[0])
  blurred = blur_lib.blur(images, kernels, padding=padding)
  alpha = admissible_alpha(images, blurred, budget, steps, ssim_fn)
  admissible_kernels = blend(kernels, alpha)
  if not return_images:
    return admissible_kernels
  a = jax.lax.stop_gradient(alpha)[:, None, None, None]
  return admissible_kernels, a * blurred + (1.0 - a) * images
