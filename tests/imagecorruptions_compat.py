"""Test-only shim: the `imagecorruptions` 1.1.2 reference on current numpy / scikit-image.

The package calls `skimage.filters.gaussian(..., multichannel=True)` (now `channel_axis=-1`) and
imports `pkg_resources` (only for its frost images, unused here). This module patches both,
then exposes the package's corruptions with explicit parameters so the CIFAR-10-C tables can be
run through the reference's own helpers (`disk`, `_motion_blur`, `clipped_zoom`, `gaussian`).
All functions take uint8 `(H, W, 3)` images and return float64 images in [0, 255].
"""

import sys
import types

import numpy as np
import pytest
import skimage.filters

try:
  import pkg_resources  # noqa: F401  (setuptools < 81)
except ImportError:  # Only frost's image paths use it.
  _stub = types.ModuleType("pkg_resources")
  _stub.resource_filename = lambda package, name: name
  sys.modules["pkg_resources"] = _stub

pytest.importorskip("cv2")
corruptions = pytest.importorskip("imagecorruptions.corruptions")


def _gaussian(image, sigma, multichannel=None, **kwargs):
  if multichannel:
    kwargs["channel_axis"] = -1
  return skimage.filters.gaussian(image, sigma=sigma, **kwargs)


corruptions.gaussian = _gaussian


def gaussian_blur(x, sigma):
  """Body of `imagecorruptions.gaussian_blur` with sigma as an argument."""
  x = corruptions.gaussian(np.array(x) / 255., sigma=sigma, multichannel=True)
  return np.clip(x, 0, 1) * 255


def defocus_blur(x, radius, alias_blur):
  """Body of `imagecorruptions.defocus_blur` (3-channel path) with explicit parameters."""
  x = np.array(x) / 255.
  kernel = corruptions.disk(radius=radius, alias_blur=alias_blur)
  channels = [corruptions.cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
  return np.clip(np.array(channels).transpose((1, 2, 0)), 0, 1) * 255


def motion_blur(x, radius, sigma, angle):
  """Body of `imagecorruptions.motion_blur` (3-channel path) at a given angle in degrees."""
  x = corruptions._motion_blur(np.array(x), radius=radius, sigma=sigma, angle=angle)
  return np.clip(x, 0, 255)


def zoom_blur(x, factors):
  """Body of `imagecorruptions.zoom_blur` (3-channel path) with explicit zoom factors."""
  x = (np.array(x) / 255.).astype(np.float32)
  out = np.zeros_like(x)
  for factor in factors:
    out += corruptions.clipped_zoom(x, factor)[:x.shape[0], :x.shape[1], :]
  return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def glass_blur(x, sigma, max_delta, iterations, seed):
  """Body of `imagecorruptions.glass_blur` with explicit parameters, seeded numpy draws."""
  rng_state = np.random.get_state()
  np.random.seed(seed)
  try:
    x = np.uint8(corruptions.gaussian(np.array(x) / 255., sigma=sigma, multichannel=True) * 255)
    for _ in range(iterations):
      for h in range(x.shape[0] - max_delta, max_delta, -1):
        for w in range(x.shape[1] - max_delta, max_delta, -1):
          dx, dy = np.random.randint(-max_delta, max_delta, size=(2,))
          h_prime, w_prime = h + dy, w + dx
          x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(corruptions.gaussian(x / 255., sigma=sigma, multichannel=True), 0, 1) * 255
  finally:
    np.random.set_state(rng_state)


def glass_draws(image_hw, max_delta, iterations, seed):
  """The (dx, dy) draws `glass_blur(..., seed)` makes, shaped (iterations, H - 2d, W - 2d, 2)."""
  height, width = image_hw
  rng = np.random.RandomState(seed)
  shape = (iterations, height - 2 * max_delta, width - 2 * max_delta, 2)
  return np.array([rng.randint(-max_delta, max_delta, size=(2,))
                   for _ in range(int(np.prod(shape[:3])))]).reshape(shape)


def motion_blur_reference_angle(x, severity, seed):
  """Runs the package's own `motion_blur` with a seeded angle; returns (output, angle)."""
  rng_state = np.random.get_state()
  try:
    np.random.seed(seed)
    angle = np.random.uniform(-45, 45)
    np.random.seed(seed)
    return corruptions.motion_blur(x, severity), angle
  finally:
    np.random.set_state(rng_state)
