"""A small learned deblurrer: `DeblurUNet`, its L1 loss and training loop, and its front-end."""

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from blur_adv.ops import augment as augment_lib
from blur_adv.ops import deblur, families


def _he_normal(key, shape, dtype=jnp.float32):
  """He-normal conv weights drawn as a flat vector: under jax's partitionable threefry (the
  default), a 4-D random draw takes seconds to compile on CPU and a 1-D one well under one."""
  fan_in = math.prod(shape[:-1])
  flat = jax.random.normal(key, (math.prod(shape),), dtype)
  return (flat * math.sqrt(2.0 / fan_in)).reshape(shape)


class DeblurUNet(nn.Module):
  """Small U-Net with a residual output: returns `images + f(images)`, f = 0 at initialization.

  Each level is two 3x3 conv + ReLU; levels are joined by 2x2 average pooling on the way down and
  bilinear resizing to the skip's shape on the way up, so any image size works (32x32 and up).
  """
  features: Sequence[int] = (16, 32, 64)

  def _block(self, x, features):
    for _ in range(2):
      x = nn.relu(nn.Conv(features, (3, 3), kernel_init=_he_normal)(x))
    return x

  @nn.compact
  def __call__(self, images):
    x = (images - 0.5) / 0.25  # centre [0, 1] inputs
    skips = []
    for level, features in enumerate(self.features):
      if level:
        x = nn.avg_pool(x, (2, 2), (2, 2), padding="SAME")
      x = self._block(x, features)
      skips.append(x)
    for features, skip in zip(self.features[-2::-1], skips[-2::-1]):
      x = jax.image.resize(x, skip.shape[:3] + x.shape[3:], "bilinear")
      x = self._block(jnp.concatenate([x, skip], axis=-1), features)
    residual = nn.Conv(images.shape[-1], (1, 1), kernel_init=nn.initializers.zeros)(x)
    return images + residual


def deblur_loss(params, model, blurred, clean):
  """Mean absolute error between the restored and the clean images (L1: sharper than L2)."""
  return jnp.mean(jnp.abs(model.apply(params, blurred) - clean))


def train_step(params, opt_state, rng, clean, *, model, optimizer, kernel_size=7,
               families=families.DEFAULT_AUGMENT_FAMILIES, ranges=None, probability=1.0):
  """One optimizer step on (clean, blurred) pairs blurred by `augment.augment`.

  Pure: bind the keyword arguments with `functools.partial` and `jax.jit` the rest.
  Returns `(params, opt_state, loss)`.
  """
  blurred = augment_lib.augment(rng, clean, probability, size=kernel_size, families=families,
                                ranges=ranges)
  loss, grads = jax.value_and_grad(deblur_loss)(params, model, blurred, clean)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def random_crops(rng, images, batch, crop):
  """`batch` random `crop x crop` patches of random images from `(N, H, W, C)`."""
  count, height, width, channels = images.shape
  if crop > min(height, width):
    raise ValueError(f"crop {crop} is larger than the {height}x{width} images")
  index_key, row_key, col_key = jax.random.split(rng, 3)
  index = jax.random.randint(index_key, (batch,), 0, count)
  rows = jax.random.randint(row_key, (batch,), 0, height - crop + 1)
  cols = jax.random.randint(col_key, (batch,), 0, width - crop + 1)
  cut = lambda i, r, c: lax.dynamic_slice(images[i], (r, c, 0), (crop, crop, channels))
  return jax.vmap(cut)(index, rows, cols)


def train_unet(rng, images, steps=300, batch_size=16, crop=32, kernel_size=7,
               families=families.DEFAULT_AUGMENT_FAMILIES, ranges=None, learning_rate=2e-3,
               features=(16, 32, 64), params=None):
  """Trains a `DeblurUNet` on random crops of `images` (`(N, H, W, C)` in [0, 1]).

  Every step blurs fresh crops with `augment.random_kernels`; the step compiles once. `params`
  continues from given variables of a `DeblurUNet(features)` instead of a fresh initialization. Returns `(model, params, losses)` with `losses` `(steps,)`.
  """
  deblur.check_positive_int("steps", steps)
  deblur.check_positive_int("batch_size", batch_size)
  deblur.check_positive_int("crop", crop)
  images = deblur.check_images(images)
  model = DeblurUNet(features=tuple(features))
  init_key, run_key = jax.random.split(rng)
  if params is None:
    params = jax.jit(model.init)(init_key, images[:1, :crop, :crop])  # eager init is slow
  optimizer = optax.adam(learning_rate)
  step = functools.partial(train_step, model=model, optimizer=optimizer, kernel_size=kernel_size,
                           families=tuple(families), ranges=ranges)

  @jax.jit
  def run_step(params, opt_state, key):
    crop_key, blur_key = jax.random.split(key)
    clean = random_crops(crop_key, images, batch_size, crop)
    return step(params, opt_state, blur_key, clean)

  # A Python loop over one jitted step: on CPU, XLA runs these convolutions about 10x slower
  # inside a `lax.scan` body than as a top-level computation (measured, jax 0.10).
  opt_state = optimizer.init(params)
  losses = []
  for key in jax.random.split(run_key, steps):
    params, opt_state, loss = run_step(params, opt_state, key)
    losses.append(loss)
  losses = jnp.stack(losses)
  return model, params, losses


def unet_front_end(images, params, model=None, clip=True):
  """Applies a trained `DeblurUNet` (default architecture unless `model` is given)."""
  images = deblur.check_images(images)
  out = (model or DeblurUNet()).apply(params, images)
  return jnp.clip(out, 0.0, 1.0) if clip else out
