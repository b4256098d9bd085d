"""The deblurring front-ends by name, and the classifier behind the configured one.

A front-end (`config.defense.front_end` != "none") sits inside the model before the classifier, so
training, evaluation and every attack see it, and gradients flow through it. "unet" is a
`models.unet.DeblurUNet` whose parameters live in `params["front_end"]`.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import optax

from blur_adv import optim
from blur_adv.models import classifiers, unet
from blur_adv.ops import deblur
from blur_adv.parallel import DATA_AXIS

FRONT_END = "front_end"  # Name of the front-end's parameter subtree.
CLASSIFIER = "classifier"


def identity_front_end(images):
  """The "none" front-end."""
  return deblur.check_images(images)


FRONT_ENDS = {
    "none": identity_front_end,
    "unsharp": deblur.unsharp_mask,
    "wiener": deblur.blind_wiener,
    "richardson_lucy": deblur.blind_richardson_lucy,
    "unet": unet.unet_front_end,  # needs params=... (from `train_unet` or a checkpoint)
}


def get_front_end(name, **options):
  """`images -> images` for front-end `name` with `options` bound (e.g. params for "unet")."""
  if name not in FRONT_ENDS:
    raise ValueError(f"front_end must be one of {sorted(FRONT_ENDS)}, got {name!r}")
  if name == "unet" and "params" not in options:
    raise ValueError("front_end 'unet' needs params=... (trained DeblurUNet variables)")
  return functools.partial(FRONT_ENDS[name], **options)


def option_names(front_end) -> set[str]:
  """Keyword options of a front-end; blind ones forward `**estimate_options` to the estimator."""
  names = set()
  for name, parameter in inspect.signature(front_end).parameters.items():
    if parameter.kind == parameter.VAR_KEYWORD:
      names |= option_names(deblur.estimate_gaussian_sigma)
    elif name != "images":
      names.add(name)
  return names


class DefendedClassifier(nn.Module):
  """`classifier(front_end(images))`; the front-end is a fixed function or a DeblurUNet."""
  classifier: nn.Module
  front_end: str
  front_end_options: tuple[tuple[str, Any], ...] = ()
  unet_features: tuple[int, ...] = (16, 32, 64)

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.front_end == "unet":
      restored = unet.DeblurUNet(features=self.unet_features, name=FRONT_END)(images)
      images = jnp.clip(restored, 0.0, 1.0)
    else:
      images = get_front_end(self.front_end, **dict(self.front_end_options))(images)
    return self.classifier(images, train=train)


def create_model(config, num_classes: int) -> nn.Module:
  """The configured classifier, behind the configured front-end (if any)."""
  classifier = classifiers.create_model(config.model, num_classes, bn_axis_name=DATA_AXIS,
                                   **config.model_kwargs)
  d = config.get("defense")  # None: every defense off
  if d is None or d.front_end == "none":
    return classifier
  return DefendedClassifier(classifier, d.front_end, tuple(sorted(d.front_end_options.items())),
                            tuple(d.unet_features))


def create_optimizer(config, total_steps: int, steps_per_epoch: int):
  """The classifier's optimizer; a frozen U-Net front-end gets zero updates."""
  tx = optim.create_optimizer(config, total_steps, steps_per_epoch)
  d = config.get("defense")
  if d is None or d.front_end != "unet" or d.unet_trainable:
    return tx
  label = lambda params: {k: ("frozen" if k == FRONT_END else "trained") for k in params}
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, label)
