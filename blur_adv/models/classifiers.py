"""Flax image classifiers, selected by name.

Every model maps float32 NHWC images in [0, 1] to logits and takes `train` to
switch BatchNorm between batch statistics and running averages. `bn_axis_name`
names the data-parallel axis: BatchNorm then averages its batch moments over
all devices, so statistics are those of the global batch.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from blur_adv.registry import Registry

MODELS: Registry[Any] = Registry("model", field="model")

_conv = functools.partial(nn.Conv, use_bias=False, kernel_init=nn.initializers.kaiming_normal())


def _batch_norm(train: bool, axis_name: str | None, name: str | None = None,
                **kwargs) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      axis_name=axis_name if train else None, name=name, **kwargs)


def _standardize(x: jnp.ndarray) -> jnp.ndarray:
  # Centre [0, 1] inputs; a fixed affine map keeps models agnostic to the dataset.
  return (x - 0.5) / 0.25


class SmallCNN(nn.Module):
  """Two conv blocks and an MLP head: the fast default for small datasets."""
  num_classes: int
  width: int = 32
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _standardize(x)
    for i, features in enumerate((self.width, 2 * self.width)):
      x = _conv(features, (3, 3), name=f"conv{i}")(x)
      x = nn.relu(_batch_norm(train, self.bn_axis_name, name=f"bn{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(4 * self.width, name="hidden")(x))
    return nn.Dense(self.num_classes, name="head")(x)


class BasicBlock(nn.Module):
  """Post-activation residual block of the CIFAR ResNets (He et al., 2016)."""
  features: int
  strides: int
  bn_axis_name: str | None

  @nn.compact
  def __call__(self, x, train: bool):
    bn = functools.partial(_batch_norm, train, self.bn_axis_name)
    y = _conv(self.features, (3, 3), strides=self.strides)(x)
    y = nn.relu(bn()(y))
    y = _conv(self.features, (3, 3))(y)
    y = bn(name="bn_out")(y)
    if x.shape != y.shape:  # Projection shortcut when the shape changes.
      x = bn()(_conv(self.features, (1, 1), strides=self.strides)(x))
    return nn.relu(x + y)


class PreActBlock(nn.Module):
  """Pre-activation residual block (He et al., 2016b), used by PreAct-ResNet and WRN."""
  features: int
  strides: int
  bn_axis_name: str | None

  @nn.compact
  def __call__(self, x, train: bool):
    bn = functools.partial(_batch_norm, train, self.bn_axis_name)
    out = nn.relu(bn()(x))
    shortcut = x
    if x.shape[-1] != self.features or self.strides != 1:
      shortcut = _conv(self.features, (1, 1), strides=self.strides, name="shortcut")(out)
    y = _conv(self.features, (3, 3), strides=self.strides)(out)
    y = _conv(self.features, (3, 3))(nn.relu(bn()(y)))
    return shortcut + y


class CifarResNet(nn.Module):
  """ResNet-(6n+2) for 32x32 inputs: three stages of n basic blocks, 16/32/64 filters."""
  num_classes: int
  depth: int = 20
  width: int = 16
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if (self.depth - 2) % 6:
      raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {self.depth}.")
    blocks_per_stage = (self.depth - 2) // 6
    x = _standardize(x)
    x = nn.relu(_batch_norm(train, self.bn_axis_name)(_conv(self.width, (3, 3))(x)))
    for stage in range(3):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, self.bn_axis_name)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class PreActResNet(nn.Module):
  """Pre-activation ResNet with a 3x3 stem for small images (ResNet-18: stages (2, 2, 2, 2))."""
  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _conv(self.width, (3, 3))(_standardize(x))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(self.width * 2**stage, strides, self.bn_axis_name)(x, train)
    x = nn.relu(_batch_norm(train, self.bn_axis_name)(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class WideResNet(nn.Module):
  """WRN-depth-k (Zagoruyko & Komodakis, 2016): three stages of pre-activation blocks."""
  num_classes: int
  depth: int = 28
  widen_factor: int = 10
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n+4, got {self.depth}.")
    blocks_per_stage = (self.depth - 4) // 6
    x = _conv(16, (3, 3))(_standardize(x))
    for stage in range(3):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(16 * self.widen_factor * 2**stage, strides, self.bn_axis_name)(x, train)
    x = nn.relu(_batch_norm(train, self.bn_axis_name)(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class BottleneckBlock(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 (4x wider) residual block of ResNet-50 (torchvision "v1.5"
  stride placement); the last BatchNorm's scale starts at zero so each block starts as identity."""
  features: int
  strides: int
  bn_axis_name: str | None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    bn = functools.partial(_batch_norm, train, self.bn_axis_name, dtype=self.dtype)
    conv = functools.partial(_conv, dtype=self.dtype)
    y = nn.relu(bn()(conv(self.features, (1, 1))(x)))
    y = nn.relu(bn()(conv(self.features, (3, 3), strides=self.strides)(y)))
    y = bn(name="bn_out", scale_init=nn.initializers.zeros)(conv(4 * self.features, (1, 1))(y))
    if x.shape != y.shape:  # Projection shortcut when the shape changes.
      x = bn(name="bn_proj")(conv(4 * self.features, (1, 1), strides=self.strides,
                                  name="conv_proj")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ImageNet ResNet (He et al., 2016) with bottleneck blocks: a 7x7/2 stem and 3x3/2 max-pool,
  four stages of `width` * (1, 2, 4, 8) bottleneck features (ResNet-50: (3, 4, 6, 3), width 64),
  global average pooling and a linear head. `dtype` is the compute dtype ("bfloat16" on GPU/TPU);
  parameters and logits stay float32."""
  num_classes: int
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  dtype: Any = "float32"
  bn_axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _conv(self.width, (7, 7), strides=(2, 2), padding=[(3, 3), (3, 3)],
              dtype=self.dtype, name="stem")(_standardize(x))
    x = nn.relu(_batch_norm(train, self.bn_axis_name, name="bn_stem", dtype=self.dtype)(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BottleneckBlock(self.width * 2**stage, strides, self.bn_axis_name, self.dtype)(
            x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


MODELS.register("small_cnn")(SmallCNN)
MODELS.register("resnet20")(functools.partial(CifarResNet, depth=20))
MODELS.register("resnet56")(functools.partial(CifarResNet, depth=56))
MODELS.register("cifar_resnet")(CifarResNet)
MODELS.register("preact_resnet18")(functools.partial(PreActResNet, stage_sizes=(2, 2, 2, 2)))
MODELS.register("wide_resnet")(WideResNet)
MODELS.register("resnet50")(functools.partial(ResNet, stage_sizes=(3, 4, 6, 3)))
MODELS.register("wrn28_10")(functools.partial(WideResNet, depth=28, widen_factor=10))


def create_model(name: str, num_classes: int, bn_axis_name: str | None = None,
                 **kwargs) -> nn.Module:
  """Builds the model registered under `name`; `kwargs` override its hyper-parameters."""
  factory = MODELS.get(name, field="model")
  try:
    return factory(num_classes=num_classes, bn_axis_name=bn_axis_name, **kwargs)
  except TypeError as e:
    raise ValueError(f"config.model_kwargs={kwargs} do not fit model {name!r}: {e}") from None
