"""Kernel families: shapes, normalization, special cases, gradients, spread, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from blur_adv.ops import kernels, measures as metrics

SIZE = 9

# family -> (builder of a kernel from a parameter vector, interior parameter values)
FAMILIES = {
    "gaussian": (lambda p: kernels.gaussian(SIZE, p[0]), [1.3]),
    "anisotropic_gaussian": (
        lambda p: kernels.anisotropic_gaussian(SIZE, p[0], p[1], p[2]), [2.1, 0.8, 0.4]),
    "defocus": (lambda p: kernels.defocus(SIZE, p[0]), [2.3]),
    "motion": (lambda p: kernels.motion(SIZE, p[0], p[1]), [4.7, 0.6]),
    "motion_path": (
        lambda p: kernels.motion_path(SIZE, p.reshape(3, 2)), [-1.6, 0.3, 0.7, 1.2, 2.4, -0.9]),
    "box": (lambda p: kernels.box(SIZE, p[0]), [3.4]),
    "free_form": (lambda p: kernels.free_form(p.reshape(SIZE, SIZE)),
                  list(np.random.default_rng(0).normal(size=SIZE * SIZE))),
}


def _assert_valid_kernels(k, shape):
  k = np.asarray(k)
  assert k.shape == shape
  assert np.isfinite(k).all() and (k >= 0).all()
  np.testing.assert_allclose(k.sum(axis=(-2, -1)), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_is_a_normalized_kernel(name):
  build, params = FAMILIES[name]
  _assert_valid_kernels(build(jnp.asarray(params, jnp.float32)), (SIZE, SIZE))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_gradients_are_finite_nonzero_and_match_finite_differences(name):
  build, params = FAMILIES[name]
  params = jnp.asarray(params, jnp.float32)
  probe = jnp.asarray(np.random.default_rng(1).normal(size=(SIZE, SIZE)), jnp.float32)
  loss = lambda p: jnp.sum(build(p) * probe)
  grads = np.asarray(jax.jit(jax.grad(loss))(params))
  assert np.isfinite(grads).all()
  # Every parameter that is not a free-form logit must move the kernel.
  if name != "free_form":
    assert (np.abs(grads) > 1e-4).all(), grads
  check_grads(loss, (params,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-3)


def test_parameters_broadcast_to_batches_of_kernels():
  sigma = jnp.linspace(0.5, 2.0, 6).reshape(2, 3)
  batch = kernels.gaussian(7, sigma)
  _assert_valid_kernels(batch, (2, 3, 7, 7))
  np.testing.assert_allclose(batch[1, 2], kernels.gaussian(7, 2.0), atol=1e-6)
  lengths, angles = jnp.array([1.0, 3.0, 5.0]), jnp.array([0.0, 0.5, 1.0])
  _assert_valid_kernels(kernels.motion(7, lengths, angles), (3, 7, 7))
  _assert_valid_kernels(kernels.motion(7, 3.0, angles), (3, 7, 7))
  _assert_valid_kernels(kernels.defocus(7, jnp.ones((4, 1))), (4, 1, 7, 7))
  _assert_valid_kernels(kernels.box(7, jnp.array([1.0, 2.0])), (2, 7, 7))
  _assert_valid_kernels(
      kernels.anisotropic_gaussian(7, jnp.ones(5), 2.0, jnp.zeros(5)), (5, 7, 7))
  _assert_valid_kernels(kernels.motion_path(7, jnp.zeros((4, 3, 2))), (4, 7, 7))
  _assert_valid_kernels(kernels.free_form(jnp.zeros((2, 5, 5))), (2, 5, 5))


def test_vmap_and_jit_agree_with_batched_call():
  radii = jnp.array([0.7, 1.5, 3.2])
  batched = kernels.defocus(9, radii)
  np.testing.assert_allclose(jax.vmap(lambda r: kernels.defocus(9, r))(radii), batched, atol=1e-7)
  np.testing.assert_allclose(jax.jit(kernels.defocus, static_argnums=0)(9, radii), batched,
                             atol=1e-7)


def test_zero_severity_is_the_identity():
  identity = np.asarray(kernels.identity(7))
  assert identity.sum() == 1.0 and identity[3, 3] == 1.0
  for k in (kernels.gaussian(7, 0.0), kernels.defocus(7, 0.0), kernels.motion(7, 0.0, 1.0),
            kernels.box(7, 1.0), kernels.anisotropic_gaussian(7, 0.0, 0.0, 0.3),
            kernels.motion_path(7, jnp.zeros((3, 2)))):
    np.testing.assert_allclose(k, identity, atol=1e-6)


def test_gaussian_matches_the_sampled_closed_form():
  r = np.arange(-4, 5)
  g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.7**2))
  np.testing.assert_allclose(kernels.gaussian(9, 1.7), g / g.sum(), atol=1e-7)


def test_anisotropic_gaussian_geometry():
  iso = kernels.anisotropic_gaussian(9, 1.5, 1.5, 0.7)
  np.testing.assert_allclose(iso, kernels.gaussian(9, 1.5), atol=1e-7)
  horizontal = np.asarray(kernels.anisotropic_gaussian(9, 3.0, 1.0, 0.0))
  vertical = np.asarray(kernels.anisotropic_gaussian(9, 3.0, 1.0, np.pi / 2))
  np.testing.assert_allclose(vertical, horizontal.T, atol=1e-6)
  assert horizontal[4, 8] > horizontal[8, 4]  # elongated along x (columns)


def test_motion_geometry():
  horizontal = np.asarray(kernels.motion(9, 5.0, 0.0))
  assert np.allclose(horizontal[[0, 1, 2, 3, 5, 6, 7, 8]], 0.0)  # only the centre row
  np.testing.assert_allclose(horizontal[4], horizontal[4, ::-1], atol=1e-7)  # centred
  up_right = np.asarray(kernels.motion(9, 6.0, np.pi / 4))
  assert up_right[1, 7] > 0 and up_right[1, 1] == 0  # 45 degrees goes up and to the right
  two_points = kernels.motion_path(9, jnp.array([[-2.5, 0.0], [2.5, 0.0]]))
  np.testing.assert_allclose(two_points, horizontal, atol=1e-6)


def test_defocus_is_a_round_disk():
  disk = np.asarray(kernels.defocus(11, 3.0))
  np.testing.assert_allclose(disk, disk.T, atol=1e-7)
  np.testing.assert_allclose(disk, disk[::-1], atol=1e-7)
  assert disk[5, 5] == disk[5, 7] > 0 and disk[5, 9] == 0
  r = np.hypot(*np.meshgrid(np.arange(-5, 6), np.arange(-5, 6)))
  inside = disk[r <= 2.5]
  np.testing.assert_allclose(inside, inside.max())  # flat top


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5])
def test_kernel_spread_closed_forms(sigma):
  np.testing.assert_allclose(metrics.kernel_spread(kernels.gaussian(41, sigma)), 2 * sigma**2,
                             rtol=1e-4)
  np.testing.assert_allclose(
      metrics.kernel_spread(kernels.anisotropic_gaussian(41, sigma, 1.0, 0.3)), sigma**2 + 1.0,
      rtol=1e-4)
  # An odd integer box of width w is a discrete uniform: variance (w^2 - 1) / 12 per axis.
  width = 2 * int(sigma) + 1
  np.testing.assert_allclose(metrics.kernel_spread(kernels.box(21, float(width))),
                             (width**2 - 1) / 6, rtol=1e-5)
  # Disk and line agree with the continuous limits up to their one-pixel anti-aliasing.
  np.testing.assert_allclose(metrics.kernel_spread(kernels.defocus(41, 3 * sigma)),
                             (3 * sigma) ** 2 / 2, rtol=0.1)
  np.testing.assert_allclose(metrics.kernel_spread(kernels.motion(41, 6 * sigma, 0.0)),
                             (6 * sigma) ** 2 / 12, rtol=0.1)
  assert float(metrics.kernel_spread(kernels.identity(5))) == 0.0


@pytest.mark.parametrize("call, field", [
    (lambda: kernels.gaussian(4, 1.0), "size"),
    (lambda: kernels.gaussian(0, 1.0), "size"),
    (lambda: kernels.gaussian(5.0, 1.0), "size"),
    (lambda: kernels.gaussian(5, -1.0), "sigma"),
    (lambda: kernels.gaussian(5, float("nan")), "sigma"),
    (lambda: kernels.anisotropic_gaussian(5, 1.0, -0.1, 0.0), "sigma_v"),
    (lambda: kernels.anisotropic_gaussian(5, 1.0, 1.0, float("nan")), "angle"),
    (lambda: kernels.defocus(5, jnp.array([1.0, -2.0])), "radius"),
    (lambda: kernels.motion(5, -3.0, 0.0), "length"),
    (lambda: kernels.motion(5, 3.0, float("nan")), "angle"),
    (lambda: kernels.motion_path(5, jnp.array([[0.0, float("nan")], [1.0, 1.0]])), "points"),
    (lambda: kernels.motion_path(5, jnp.zeros((1, 2))), "points"),
    (lambda: kernels.box(5, -1.0), "width"),
    (lambda: kernels.free_form(jnp.zeros((4, 4))), "size"),
    (lambda: kernels.free_form(jnp.zeros((5, 3))), "logits"),
    (lambda: kernels.identity(2), "size"),
])
def test_bad_parameters_raise_naming_the_field(call, field):
  with pytest.raises(ValueError, match=field):
    call()
