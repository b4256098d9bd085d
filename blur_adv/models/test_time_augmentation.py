"""Test-time augmentation (`config.tta`): at evaluation, logits averaged over fixed views.

It wraps the train state's `apply_fn`, so everything that evaluates the classifier (the clean
evaluator, corruptions, every attack and its gradients) sees the same function: an attack
differentiates through the average. Training (`train=True`) sees the plain model.
"""
from __future__ import annotations

import jax.numpy as jnp

from blur_adv import config_checks

TTA_MODES = ("none", "flip", "flip_translate")


def _flip(x):
  return x[:, :, ::-1]


def translate(x, dy: int, dx: int):
  """`x` shifted down by `dy` and right by `dx` pixels, reflect-padded at the edges."""
  pad = max(abs(dy), abs(dx))
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  h, w = x.shape[1:3]
  return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def views_and_weights(mode: str):
  """The view functions of `mode` and the weight of each view's logits (they sum to 1)."""
  if mode == "none":
    return (lambda x: x,), (1.0,)
  if mode == "flip":
    return (lambda x: x, _flip), (0.5, 0.5)
  if mode == "flip_translate":
    # The CIFAR-10 speedrun's views: half the weight on the image and its mirror, half on two
    # diagonal 1-pixel shifts and their mirrors.
    shifts = tuple(lambda x, s=s: translate(x, s, s) for s in (1, -1))
    mirrored = tuple(lambda x, f=f: _flip(f(x)) for f in shifts)
    return (lambda x: x, _flip) + shifts + mirrored, (0.25, 0.25) + (0.125,) * 4
  raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")


def with_test_time_augmentation(apply_fn, mode: str):
  """`apply_fn(variables, images, train=..., **kwargs)` whose eval-mode logits average `mode`'s
  views; unchanged in training and for mode "none"."""
  views, weights = views_and_weights(mode)
  if mode == "none":
    return apply_fn

  def apply(variables, images, train: bool = False, **kwargs):
    if train:
      return apply_fn(variables, images, train=True, **kwargs)
    n = images.shape[0]
    # One pass over all views; in eval mode BatchNorm uses running averages, so views don't mix.
    logits = apply_fn(variables, jnp.concatenate([view(images) for view in views]), train=False,
                      **kwargs)
    logits = logits.reshape((len(views), n) + logits.shape[1:])
    return jnp.tensordot(jnp.asarray(weights, logits.dtype), logits, axes=1)

  apply.plain_apply = apply_fn  # For `without_test_time_augmentation`.
  return apply


def without_test_time_augmentation(apply_fn):
  """The plain model's `apply_fn` under a `with_test_time_augmentation` wrapper (itself when
  unwrapped): the function training sees and its adversary attacks."""
  return getattr(apply_fn, "plain_apply", apply_fn)


def check_config(config):
  if config.tta not in TTA_MODES:
    raise config_checks.unknown_name("test-time augmentation", "tta", config.tta, TTA_MODES)


config_checks.register_fields("tta", validator=check_config)
