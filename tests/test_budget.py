"""SSIM budget: zero violations over random images, kernels of every family and budgets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.metrics

from blur_adv.ops import blur, budget, kernels, measures as metrics

SIZE = 7


def random_images(rng, count, size=24):
  """Half uniform noise, half smooth random fields (blur hurts their SSIM very differently)."""
  noise = rng.uniform(size=(count, size, size, 3))
  coarse = rng.uniform(size=(count, 6, 6, 3))
  smooth = np.asarray(jax.image.resize(jnp.asarray(coarse), (count, size, size, 3), "cubic"))
  images = np.where(np.arange(count)[:, None, None, None] % 2 == 0, noise, smooth)
  return np.clip(images, 0, 1).astype(np.float32)


def kernels_of_every_family(rng, per_family):
  """`per_family` random kernels of each family in kernels.py (free-form included)."""
  n = per_family
  u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)
  return _build(u(0.2, 3), u(0.2, 3), u(0.1, 1), u(0, np.pi), u(0.3, 3), u(0.5, 6),
                u(-np.pi, np.pi), u(1, 7), rng.uniform(-3, 3, (n, 4, 2)).astype(np.float32),
                rng.normal(0, 2, (n, SIZE, SIZE)).astype(np.float32))


@jax.jit  # one compilation instead of op-by-op dispatch
def _build(sigma, sigma_u, sigma_v, angle, radius, length, motion_angle, width, points, logits):
  n = sigma.shape[0]
  built = [
      kernels.gaussian(SIZE, sigma),
      kernels.anisotropic_gaussian(SIZE, sigma_u, sigma_v, angle),
      kernels.defocus(SIZE, radius),
      kernels.motion(SIZE, length, motion_angle),
      kernels.box(SIZE, width),
      kernels.motion_path(SIZE, points),
      kernels.free_form(logits),
      jnp.broadcast_to(kernels.identity(SIZE), (n, SIZE, SIZE)),
  ]
  return jnp.concatenate([jnp.asarray(k, jnp.float32) for k in built])


@pytest.fixture(scope="module")
def case():
  rng = np.random.default_rng(0)
  k = kernels_of_every_family(rng, per_family=12)
  x = random_images(rng, k.shape[0])
  b = np.exp(rng.uniform(np.log(1e-3), 0, k.shape[0])).astype(np.float32)  # log-uniform
  admissible = jax.jit(lambda x, k, b: budget.make_admissible(x, k, b, return_images=True))
  k_adm, y = admissible(x, k, b)
  return x, k, b, k_adm, y


def test_zero_violations_over_every_family_and_random_budgets(case):
  x, k, b, k_adm, y = case
  # No tolerance: the bisection keeps budget.SAFETY_MARGIN for recomputation noise.
  assert int(jnp.sum(metrics.ssim(x, y) < 1 - b)) == 0
  # Re-blurring with the returned kernels differs only by float rounding, within the margin.
  reblurred = blur.blur(x, k_adm)
  assert int(jnp.sum(metrics.ssim(x, reblurred) < 1 - b)) == 0
  # An independent SSIM (scikit-image, float64) agrees.
  for xi, yi, bi in zip(np.asarray(x, np.float64), np.asarray(reblurred, np.float64), b):
    value = skimage.metrics.structural_similarity(
        xi, yi, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        channel_axis=-1)
    assert value >= 1 - bi - 1e-4


def test_admissible_kernels_are_tight_identity_blends(case):
  x, k, b, k_adm, _ = case
  np.testing.assert_allclose(jnp.sum(k_adm, axis=(1, 2)), 1.0, atol=1e-5)
  assert float(jnp.min(k_adm)) >= 0
  blurred = blur.blur(x, k)
  alpha = budget.admissible_alpha(x, blurred, b)
  np.testing.assert_allclose(k_adm, budget.blend(k, alpha), atol=1e-6)
  original = metrics.ssim(x, blurred)
  # Admissible kernels are kept as they are ...
  kept = np.asarray(original >= 1 - b + budget.SAFETY_MARGIN)
  np.testing.assert_array_equal(np.asarray(alpha)[kept], 1.0)
  # ... the others are pulled just inside the boundary: one bisection step more violates it.
  pulled = ~kept
  assert pulled.sum() >= 10 and kept.sum() >= 10  # both cases occur in this random set
  step = 2.0 ** -budget.DEFAULT_BISECTION_STEPS
  a = jnp.minimum(alpha + step, 1.0)[:, None, None, None]
  beyond = metrics.ssim(x, a * blurred + (1 - a) * x)
  assert bool(jnp.all((beyond < 1 - b + budget.SAFETY_MARGIN)[pulled]))


def test_scalar_budget_shared_kernel_and_gradient():
  rng = np.random.default_rng(1)
  x = jnp.asarray(random_images(rng, 4))
  sigma = jnp.float32(2.0)

  def quality(s):
    k_adm = budget.make_admissible(x, kernels.gaussian(SIZE, s), 0.05)  # (k, k) and scalar
    per_example = metrics.ssim(x, blur.blur(x, k_adm))
    return jnp.sum(per_example), (per_example, k_adm.shape)

  (_, (per_example, shape)), grad = jax.jit(jax.value_and_grad(quality, has_aux=True))(sigma)
  assert shape == (4, SIZE, SIZE)
  assert bool(jnp.all(per_example >= 0.95))
  # alpha is held constant, so a wider Gaussian still lowers SSIM through the blended kernel.
  assert np.isfinite(float(grad)) and float(grad) < 0


@pytest.mark.parametrize("value,shape,match", [
    (0.0, None, "budget"), (1.5, None, "budget"), (np.nan, None, "budget"),
    (np.full(3, 0.1), None, "budget"), (0.1, (2, 3, 3), "kernels"), (0.1, (4, 4, 4), "kernel")])
def test_bad_input_raises(value, shape, match):
  x = jnp.zeros((4, 16, 16, 1))
  k = kernels.gaussian(3, 1.0) if shape is None else jnp.full(shape, 1.0 / shape[-1] ** 2)
  with pytest.raises(ValueError, match=match):
    budget.make_admissible(x, k, value)
