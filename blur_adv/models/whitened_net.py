"""A small, fast CIFAR classifier: a frozen patch-whitening layer and three conv groups.

The design follows the published CIFAR-10 speedrun facts (Jordan, 2024, "airbench"): a 2x2
first layer fixed to the whitening basis of training-image patches, then three groups of
conv -> 2x2 max-pool -> BatchNorm -> activation -> conv -> BatchNorm -> activation, a global
max-pool and a linear head whose logits are scaled down (a temperature). The whitening filter
is a statistic of the training data, so it lives in `batch_stats` beside BatchNorm's running
moments: it is never trained, it is checkpointed, and it is computed from the images `init`
sees (`experiment.setup` initializes every model on a sample of training images).
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from blur_adv.models.classifiers import MODELS

# Eigenvalue floor of the patch whitening, in units of the standardized input's variance.
WHITENING_EPSILON = 5e-4
_ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu}


def patch_whitening_filters(images: jax.Array, patch: int = 2, eps: float = WHITENING_EPSILON):
  """`(patch, patch, C, 2 * patch * patch * C)` conv filters that whiten image patches.

  Each eigenvector of the patch covariance, divided by the square root of its eigenvalue, is
  one filter, and so is its negation (the activation that follows keeps either sign).
  """
  c = images.shape[-1]
  patches = jax.lax.conv_general_dilated_patches(
      images, (patch, patch), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # conv_general_dilated_patches orders the patch features as (C, kh, kw).
  flat = patches.reshape(-1, c * patch * patch)
  covariance = flat.T @ flat / flat.shape[0]
  eigenvalues, eigenvectors = jnp.linalg.eigh(covariance)
  scaled = eigenvectors / jnp.sqrt(jnp.maximum(eigenvalues, 0.0) + eps)  # (features, k)
  filters = jnp.concatenate([scaled, -scaled], axis=1)
  return filters.reshape(c, patch, patch, -1).transpose(1, 2, 0, 3)


def _max_pool_2x2(x):
  # A reshape and max, so the gradient is an elementwise mask rather than a select-and-scatter
  # (on XLA:CPU the whole step measured the same either way). Odd trailing rows/columns are
  # dropped, as with a 2x2 stride-2 window.
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _identity_on_first_channels(key, shape, dtype=jnp.float32):
  """He-normal 3x3 filters whose first min(in, out) outputs start as the identity map: an
  implicit residual connection at initialization."""
  kh, kw, cin, cout = shape
  filters = nn.initializers.kaiming_normal()(key, shape, dtype)
  n = min(cin, cout)
  identity = jnp.zeros(shape, dtype).at[kh // 2, kw // 2, jnp.arange(n), jnp.arange(n)].set(1)
  return jnp.where(jnp.arange(cout) < n, identity, filters)


class ConvGroup(nn.Module):
  features: int
  activation: str
  bn_axis_name: str | None
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool):
    # Scale-free BatchNorm with fast-moving running moments, as in the speedrun.
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.6,
                             epsilon=1e-5, use_scale=False, dtype=self.dtype,
                             axis_name=self.bn_axis_name if train else None)
    conv = functools.partial(nn.Conv, self.features, (3, 3), use_bias=False, dtype=self.dtype,
                             kernel_init=_identity_on_first_channels)
    act = _ACTIVATIONS[self.activation]
    x = act(norm()(_max_pool_2x2(conv()(x))))
    return act(norm()(conv()(x)))


class WhitenedConvNet(nn.Module):
  """Patch whitening, three conv groups (`widths`), global max-pool, scaled linear head."""
  num_classes: int
  widths: Sequence[int] = (64, 128, 128)
  activation: str = "relu"
  whitening_patch: int = 2
  logit_scale: float = 1 / 9
  # A trained bias after the whitening layer, as in the speedrun. Without it the standard
  # trainer's backward pass stops at the first conv (no input gradient there).
  whitening_bias: bool = True
  dtype: str = "float32"  # Compute dtype, e.g. "bfloat16" on GPU/TPU; parameters stay float32.
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.activation not in _ACTIVATIONS:
      raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
    x = (x - 0.5) / 0.25
    whitening = self.variable("batch_stats", "whitening", patch_whitening_filters, x,
                              self.whitening_patch)
    x = jax.lax.conv_general_dilated(
        x, whitening.value, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.whitening_bias:
      x = x + self.param("whitening_bias", nn.initializers.zeros, (x.shape[-1],))
    x = nn.gelu(x)
    for features in self.widths:
      x = ConvGroup(features, self.activation, self.bn_axis_name, self.dtype)(x, train)
    x = jnp.max(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype)(x)
    return logits.astype(jnp.float32) * self.logit_scale


MODELS.register("whitened_convnet")(WhitenedConvNet)
