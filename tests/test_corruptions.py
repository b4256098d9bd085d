"""Blur corruptions against the `imagecorruptions` reference on real photos, and CE / mCE."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import skimage.transform
from PIL import Image

from blur_adv.ops import corruptions

reference = pytest.importorskip("imagecorruptions_compat")

MAD_BAR = 1.0 / 255.0  # the bar: mean absolute difference per image


@functools.lru_cache(maxsize=None)
def photos(size):
  """astronaut, chelsea and coffee resized to size x size, as uint8 (N, size, size, 3)."""
  images = []
  for load in (skimage.data.astronaut, skimage.data.chelsea, skimage.data.coffee):
    image = skimage.transform.resize(load(), (size, size), anti_aliasing=True)
    images.append(np.uint8(np.round(image * 255)))
  return np.stack(images)


def as_batch(images):
  return jnp.asarray(images / 255.0, jnp.float32)


def max_mad(ours, theirs_0_255):
  """Largest per-image mean absolute difference, images in [0, 1]."""
  theirs = np.stack(theirs_0_255) / 255.0
  return float(np.abs(np.asarray(ours, np.float64) - theirs).mean(axis=(1, 2, 3)).max())


MOTION_ANGLES = (-45.0, 0.0, 90.0, 17.3, -31.8)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_cifar_table_matches_reference(severity):
  """32x32 photos, CIFAR-10-C parameters through the reference's own helpers (disk, cv2,
  clipped_zoom, _motion_blur, skimage gaussian)."""
  images = photos(32)
  x = as_batch(images)
  table = corruptions.TABLES["cifar"]
  sigma = table["gaussian_blur"][severity - 1]
  radius, alias_blur = table["defocus_blur"][severity - 1]
  factors = table["zoom_blur"][severity - 1]
  motion_radius, motion_sigma = table["motion_blur"][severity - 1]
  angles = np.array(MOTION_ANGLES[:len(images)]) + severity  # vary the angles with severity
  mads = {
      "gaussian_blur": max_mad(corruptions.gaussian_blur(x, severity),
                               [reference.gaussian_blur(im, sigma) for im in images]),
      "defocus_blur": max_mad(corruptions.defocus_blur(x, severity),
                              [reference.defocus_blur(im, radius, alias_blur) for im in images]),
      "zoom_blur": max_mad(corruptions.zoom_blur(x, severity),
                           [reference.zoom_blur(im, factors) for im in images]),
      "motion_blur": max_mad(corruptions.motion_blur(x, severity, angles), [
          reference.motion_blur(im, motion_radius, motion_sigma, a)
          for im, a in zip(images, angles)]),
  }
  print(severity, {name: f"{mad * 255:.2e}/255" for name, mad in mads.items()})
  assert all(mad < MAD_BAR for mad in mads.values()), mads


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_imagenet_table_matches_reference_package(severity):
  """224x224 photos through the package's own corruption functions (ImageNet-C table)."""
  images = photos(224)
  x = as_batch(images)
  pil = [Image.fromarray(im) for im in images]
  ref = reference.corruptions
  motion = [reference.motion_blur_reference_angle(im, severity, seed)
            for seed, im in enumerate(pil)]
  angles = np.array([angle for _, angle in motion])
  mads = {
      "gaussian_blur": max_mad(corruptions.gaussian_blur(x, severity),
                               [ref.gaussian_blur(im, severity) for im in pil]),
      "defocus_blur": max_mad(corruptions.defocus_blur(x, severity),
                              [ref.defocus_blur(im, severity) for im in pil]),
      "zoom_blur": max_mad(corruptions.zoom_blur(x, severity),
                           [ref.zoom_blur(im, severity) for im in pil]),
      "motion_blur": max_mad(corruptions.motion_blur(x, severity, angles),
                             [out for out, _ in motion]),
  }
  print(severity, {name: f"{mad * 255:.2e}/255" for name, mad in mads.items()})
  assert all(mad < MAD_BAR for mad in mads.values()), mads


@pytest.mark.parametrize("table,size,severities", [("cifar", 32, (1, 2, 3, 4, 5)),
                                                   ("imagenet", 224, (1,))])
def test_glass_blur_replaying_the_reference_draws_matches(table, size, severities):
  """Given the reference's own random moves, glass blur matches it (pixel moves included)."""
  images = photos(size)[:1 if size > 32 else None]
  for severity in severities:
    sigma, max_delta, iterations = corruptions.TABLES[table]["glass_blur"][severity - 1]
    offsets = np.stack([reference.glass_draws((size, size), max_delta, iterations, seed)
                        for seed in range(len(images))])
    ours = corruptions.glass_blur_params(as_batch(images), sigma, max_delta, iterations,
                                         offsets=offsets)
    theirs = [reference.glass_blur(im, sigma, max_delta, iterations, seed)
              for seed, im in enumerate(images)]
    mad = max_mad(ours, theirs)
    print(table, severity, f"{mad * 255:.2e}/255")
    assert mad < MAD_BAR


def test_glass_blur_with_a_key_changes_images_like_the_reference():
  """Random moves cannot match pixel for pixel; their effect's size must match the reference's."""
  images = photos(32)
  x = as_batch(images)
  for severity in (5,):
    ours = corruptions.glass_blur(x, severity, jax.random.PRNGKey(severity))
    sigma, max_delta, iterations = corruptions.TABLES["cifar"]["glass_blur"][severity - 1]
    theirs = np.stack([reference.glass_blur(im, sigma, max_delta, iterations, 100 + i)
                       for i, im in enumerate(images)]) / 255.0
    change_ours = np.abs(np.asarray(ours) - np.asarray(x)).mean(axis=(1, 2, 3))
    change_theirs = np.abs(theirs - np.asarray(x)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(change_ours, change_theirs, rtol=0.15)
    again = corruptions.glass_blur(x, severity, jax.random.PRNGKey(severity + 10))
    assert not np.allclose(np.asarray(again), np.asarray(ours))


def test_default_table_follows_image_size_and_can_be_overridden():
  assert corruptions.default_table((1, 32, 32, 3)) == "cifar"
  assert corruptions.default_table((1, 224, 224, 3)) == "imagenet"
  x = as_batch(photos(32))
  np.testing.assert_allclose(corruptions.gaussian_blur(x, 2, table="imagenet"),
                             corruptions.gaussian_blur_params(x, 2.0), atol=1e-6)
  assert not np.allclose(corruptions.gaussian_blur(x, 2),
                         corruptions.gaussian_blur(x, 2, "imagenet"))


def test_corrupt_dispatches_and_jits():
  x = as_batch(photos(32))
  key = jax.random.PRNGKey(0)
  jitted = jax.jit(lambda images, k: corruptions.corrupt(images, "motion_blur", 3, key=k))
  angles = corruptions.random_motion_angles(key, x.shape[0])
  assert np.all((np.asarray(angles) >= -45) & (np.asarray(angles) < 45))
  np.testing.assert_allclose(jitted(x, key), corruptions.motion_blur(x, 3, angles), atol=1e-5)
  for name in corruptions.CORRUPTIONS:
    out = corruptions.corrupt(x, name, 2, key=key)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("call,match", [
    (lambda x: corruptions.corrupt(x, "snow", 1), "corruption"),
    (lambda x: corruptions.corrupt(x, "zoom_blur", 6), "severity"),
    (lambda x: corruptions.corrupt(x, "zoom_blur", 1, table="svhn"), "table"),
    (lambda x: corruptions.corrupt(x, "glass_blur", 1), "key"),
    (lambda x: corruptions.corrupt(x, "motion_blur", 1), "angle"),
    (lambda x: corruptions.motion_blur(x, 1, np.zeros(5)), "angle"),
    (lambda x: corruptions.corrupt(x[0], "zoom_blur", 1), "images"),
    (lambda x: corruptions.zoom_blur_params(x, [0.9]), "zoom"),
    (lambda x: corruptions.glass_blur_params(x, 1.0, 1, 1, offsets=np.zeros((3, 1, 2, 2, 2))),
     "offsets"),
])
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call(as_batch(photos(32)))


# Corruption errors: expected values worked out by hand in the comments.


def test_corruption_error_against_hand_computed_values():
  errors = [0.1, 0.2, 0.3, 0.4, 0.5]  # sum 1.5
  baseline = [0.2, 0.4, 0.6, 0.8, 1.0]  # sum 3.0
  assert corruptions.corruption_error(errors, baseline) == pytest.approx(0.5)
  # Relative: sum(E - 0.05) = 1.25; sum(base - 0.1) = 2.5.
  assert corruptions.relative_corruption_error(errors, 0.05, baseline, 0.1) == pytest.approx(0.5)
  # A published mean works like the per-severity list: mean(errors) = 0.3 vs 0.6.
  assert corruptions.corruption_error(errors, 0.6) == pytest.approx(0.5)


def test_mce_against_alexnet_hand_computed():
  errors = {"defocus_blur": [0.3, 0.4, 0.5, 0.6, 0.7],  # mean 0.5
            "zoom_blur": [0.2, 0.2, 0.2, 0.2, 0.2]}  # mean 0.2
  # CE: 0.5 / 0.819880 = 0.6098453; 0.2 / 0.798360 = 0.2505136; mean 0.4301794.
  assert corruptions.mean_corruption_error(errors) == pytest.approx(0.4301794, abs=1e-6)
  # Relative, clean error 0.1: (0.5 - 0.1) / (0.819880 - 0.4348) = 0.4 / 0.385080 = 1.0387452;
  # (0.2 - 0.1) / (0.798360 - 0.4348) = 0.1 / 0.363560 = 0.2750578; mean 0.6569015.
  assert corruptions.relative_mean_corruption_error(errors, 0.1) == pytest.approx(0.6569015,
                                                                                  abs=1e-6)


def test_mce_against_a_baseline_model_hand_computed():
  errors = {"glass_blur": [0.5] * 5, "motion_blur": [0.1, 0.2, 0.3, 0.2, 0.2]}  # means 0.5, 0.2
  baseline = {"glass_blur": [0.4, 0.5, 0.6, 0.7, 0.8],  # mean 0.6
              "motion_blur": [0.4] * 5, "zoom_blur": [0.9] * 5}  # extra entries are ignored
  # CE 0.5/0.6 = 0.833333 and 0.2/0.4 = 0.5: mCE 0.666667.
  assert corruptions.mean_corruption_error(errors, baseline) == pytest.approx(2 / 3)
  # Relative with clean errors 0.1 (model) and 0.2 (baseline): 0.4/0.4 = 1 and 0.1/0.2 = 0.5.
  assert corruptions.relative_mean_corruption_error(errors, 0.1, baseline, 0.2) == pytest.approx(
      0.75)


@pytest.mark.parametrize("call,match", [
    (lambda: corruptions.corruption_error([0.1, 1.2], [0.5, 0.5]), "errors"),
    (lambda: corruptions.corruption_error([0.1] * 5, [0.5] * 3), "baseline_errors"),
    (lambda: corruptions.mean_corruption_error({"frost": [0.1]}), "frost"),
    (lambda: corruptions.mean_corruption_error({}), "empty"),
    (lambda: corruptions.relative_mean_corruption_error({"zoom_blur": [0.2]}, 0.1,
                                                        {"zoom_blur": [0.3]}),
     "baseline_clean_error"),
])
def test_bad_error_tables_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
