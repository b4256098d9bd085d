"""Blur and noise augmentation inside train steps, keyed per example so it does not depend on the
devices.

Each example's randomness comes from its index in the global batch (`example_keys`), so 1 device,
8 devices and 2 hosts draw the same kernels.
"""

import jax
import jax.numpy as jnp

from blur_adv.defense import config as defense_config
from blur_adv.ops import augment
from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels as kernels_lib
from blur_adv.parallel import DATA_AXIS


def example_keys(rng, local_batch):
  """One key per example, from its index in the global batch.

  Per-example randomness then does not depend on how the batch is split over devices and
  processes, so 1 device, 8 devices and 2 hosts train identically. Call inside a data-parallel
  step (it reads the device's index on the data axis).
  """
  first = jax.lax.axis_index(DATA_AXIS) * local_batch
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(first + jnp.arange(local_batch))


def random_blur(d, keys, images, probability):
  """Blurs example i with probability `probability` by a random kernel drawn from `keys[i]`."""
  size, families = d.augment_kernel_size, tuple(d.augment_families)
  kernels = jax.vmap(lambda k: augment.random_kernels(
      jax.random.fold_in(k, 0), 1, size, families, defense_config.ranges(d))[0])(keys)
  apply = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1)))(keys) < probability
  kernels = jnp.where(apply[:, None, None], kernels, kernels_lib.identity(size))
  return blur_lib.blur(images, kernels)


def augment_images(config, keys, images):
  """Blur augmentation of a training batch (identity when `augment_probability` is 0)."""
  d = defense_config.settings(config)
  if d.augment_probability <= 0:
    return images
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 101))(keys)  # Apart from other users of keys.
  return random_blur(d, keys, images, d.augment_probability)


def add_noise(config, keys, images):
  """Gaussian-noise augmentation of the classifier's input: example i gets i.i.d. per-pixel noise
  of std `noise_std` with probability `noise_probability` (drawn from `keys[i]`), then is clipped
  to [0, 1]; the other examples are returned as they are. Identity when `noise_probability` is 0.
  Trainers apply it last, to the training batch the classifier sees (not to the consistency
  loss's second view, which stays the noise-free anchor), so an adversary's SSIM budget is
  measured on noise-free images."""
  d = defense_config.settings(config)
  if d.noise_probability <= 0:
    return images
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 103))(keys)  # Apart from other users of keys.
  noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), images.shape[1:],
                                               images.dtype))(keys)
  apply = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1)))(keys)
  # Only noised examples are clipped: clip's gradient at a saturated pixel is 0.5, which would
  # halve the adversary's input gradient there on the rows left alone.
  noised = jnp.clip(images + d.noise_std * noise, 0.0, 1.0)
  return jnp.where((apply < d.noise_probability)[:, None, None, None], noised, images)


def blurred_view(config, keys, images):
  """The always-blurred second view of the consistency loss."""
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 102))(keys)
  return random_blur(defense_config.settings(config), keys, images, 1.0)
