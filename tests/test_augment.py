"""Blur augmentation: valid kernels, severity ranges, probability, determinism, jit, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blur_adv.ops import augment
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import measures as metrics

SIZE = 7
ALL_FAMILIES = tuple(kernels_lib.PARAMETRIC_FAMILIES)


@functools.lru_cache(maxsize=None)
def _sampler(size, families, family_weights=None):
  return jax.jit(lambda key: augment.random_kernels(key, 512, size, families,
                                                    family_weights=family_weights))


def test_kernels_are_valid_for_every_family():
  kernels = np.asarray(_sampler(SIZE, ALL_FAMILIES)(jax.random.key(0)))
  assert kernels.shape == (512, SIZE, SIZE)
  assert (kernels >= 0).all()
  np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)


def _endpoint_spreads(family, size):
  """Smallest and largest spread over the range's corners (and a grid of angles)."""
  fn, names = kernels_lib.PARAMETRIC_FAMILIES[family]
  ranges = augment.default_ranges(size, (family,))[family]
  grids = [np.linspace(*ranges[n], 13) if n == "angle" else np.array(ranges[n]) for n in names]
  mesh = [m.ravel() for m in np.meshgrid(*grids)]
  spreads = np.asarray(metrics.kernel_spread(fn(size, *mesh)))
  return spreads.min(), spreads.max()


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_severity_within_the_family_range(family):
  # Spread grows with every size parameter, so the range's corners bound the sampled spreads.
  spreads = np.asarray(metrics.kernel_spread(_sampler(SIZE, (family,))(jax.random.key(1))))
  low, high = _endpoint_spreads(family, SIZE)
  assert spreads.min() >= low - 0.05 and spreads.max() <= high + 0.05, (spreads.min(),
                                                                        spreads.max(), low, high)
  # The range is used, not just respected: samples reach near both ends.
  assert spreads.min() < low + 0.25 * (high - low) and spreads.max() > high - 0.25 * (high - low)


def test_defaults_span_cifar10c_severities_at_size_7():
  # CIFAR-10-C blur kernels have spreads of about 0.16 (defocus severity 1) to 2.5 (motion 5).
  spreads = np.asarray(metrics.kernel_spread(_sampler(SIZE, ALL_FAMILIES)(jax.random.key(2))))
  assert 0.1 < spreads.min() < 0.5 and 2.0 < spreads.max() < 3.0, (spreads.min(), spreads.max())


def test_larger_kernels_allow_stronger_blur():
  small = augment.default_ranges(7)
  large = augment.default_ranges(15)
  assert large["gaussian"]["sigma"][1] > 2 * small["gaussian"]["sigma"][1]
  assert large["gaussian"]["sigma"][0] == small["gaussian"]["sigma"][0]
  tiny = augment.default_ranges(3)
  for family in tiny.values():
    for low, high in family.values():
      assert 0 <= low < high


def test_family_weights_exclude_a_family():
  kernels = np.asarray(_sampler(SIZE, ("gaussian", "motion"), (1.0, 0.0))(jax.random.key(3)))
  # Isotropic Gaussians are mirror-symmetric; motion blur at a random angle almost never is.
  np.testing.assert_allclose(kernels, kernels[:, ::-1, :], atol=1e-6)
  np.testing.assert_allclose(kernels, np.swapaxes(kernels, 1, 2), atol=1e-6)
  mixed = np.asarray(_sampler(SIZE, ("gaussian", "motion"))(jax.random.key(3)))
  asymmetric = np.abs(mixed - mixed[:, ::-1, :]).max(axis=(1, 2)) > 1e-3
  assert 0.35 < asymmetric.mean() < 0.65  # about half are motion kernels


@functools.lru_cache(maxsize=None)
def _augmenter():
  return jax.jit(functools.partial(augment.augment, size=SIZE, return_kernels=True))


def _tiny_images(batch, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((batch, 8, 8, 1), np.float32))


@pytest.mark.parametrize("probability", [0.0, 0.3, 1.0])
def test_probability_is_respected(probability):
  batch = 4000
  images = _tiny_images(batch)
  out, kernels = _augmenter()(jax.random.key(4), images, probability)
  blurred = np.abs(np.asarray(kernels) - np.asarray(kernels_lib.identity(SIZE))).max(axis=(1, 2))
  blurred = blurred > 1e-6
  # Binomial: 4 standard deviations (and exact at 0 and 1).
  tolerance = 4 * np.sqrt(probability * (1 - probability) / batch)
  assert abs(blurred.mean() - probability) <= tolerance, blurred.mean()
  changed = np.abs(np.asarray(out) - np.asarray(images)).max(axis=(1, 2, 3)) > 1e-6
  np.testing.assert_array_equal(changed, blurred)


def test_deterministic_given_the_key():
  images = _tiny_images(16, seed=1)
  first, kernels = _augmenter()(jax.random.key(5), images, 0.7)
  again, _ = _augmenter()(jax.random.key(5), images, 0.7)
  other, _ = _augmenter()(jax.random.key(6), images, 0.7)
  np.testing.assert_array_equal(first, again)
  assert np.abs(np.asarray(first) - np.asarray(other)).max() > 1e-3
  assert kernels.shape == (16, SIZE, SIZE)


def test_traced_probability_works_under_jit():
  images = _tiny_images(8)
  run = jax.jit(lambda p: augment.augment(jax.random.key(0), images, p, size=SIZE))
  np.testing.assert_allclose(run(0.0), images, atol=1e-6)  # identity kernel


@pytest.mark.parametrize("call, field", [
    (lambda: augment.random_kernels(jax.random.key(0), 4, 7, ("gaussian", "blurry")), "families"),
    (lambda: augment.random_kernels(jax.random.key(0), 4, 6), "size"),
    (lambda: augment.random_kernels(jax.random.key(0), 4, 7, ("gaussian",),
                                    ranges={"gaussian": {"sigma": (2.0, 1.0)}}), "ranges"),
    (lambda: augment.random_kernels(jax.random.key(0), 4, 7, ("gaussian",),
                                    ranges={"gaussian": {"radius": (0.0, 1.0)}}), "ranges"),
    (lambda: augment.random_kernels(jax.random.key(0), 4, 7, ("gaussian",),
                                    family_weights=(1.0, 2.0)), "family_weights"),
    (lambda: augment.augment(jax.random.key(0), _tiny_images(2), 1.5), "probability"),
    (lambda: augment.augment(jax.random.key(0), _tiny_images(2), -0.1), "probability"),
    (lambda: augment.augment(jax.random.key(0), jnp.zeros((8, 8, 1)), 0.5), "images"),
])
def test_bad_input_raises_a_one_line_value_error(call, field):
  with pytest.raises(ValueError, match=field) as info:
    call()
  assert "\n" not in str(info.value)
