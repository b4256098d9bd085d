"""The blur adversary: a Flax network that proposes a worst-case kernel for each image.

It reads the image (and a noise vector, so one image can get different kernels), and has one head
per kernel family, producing that family's unconstrained parameters (`family_params`, the bounded
parametrization the attacks use, so every kernel fits the window), and a mixture head.
The proposed kernel is the mixture-weighted average of the family kernels, which is itself a
kernel; the mixture weights say which family the adversary currently prefers. Kernels leave the
network unconstrained by the SSIM budget: callers make them admissible (`budget.make_admissible`).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import families as families_lib
from blur_adv.ops import family_params


class KernelAdversary(nn.Module):
  """`(images (B,H,W,C), noise (B, noise_dim)) -> (kernels (B, k, k), mixture (B, F))`."""
  kernel_size: int
  families: Sequence[str] = families_lib.FAMILIES
  features: int = 16

  @nn.compact
  def __call__(self, images, noise):
    for family in self.families:
      family_params.raw_shape(family, self.kernel_size)  # validates the name and the size
    x = images
    for scale in (1, 2):
      x = nn.gelu(nn.Conv(self.features * scale, (3, 3), strides=(2, 2))(x))
    summary = jnp.concatenate([jnp.mean(x, axis=(1, 2)), noise], axis=-1)
    hidden = nn.gelu(nn.Dense(4 * self.features)(summary))
    batch = images.shape[0]
    family_kernels = []
    for family in self.families:
      shape = family_params.raw_shape(family, self.kernel_size)
      # Small initial weights: every head starts near the middle of its family's range.
      raw = nn.Dense(int(np.prod(shape)), name=f"head_{family}",
                     kernel_init=nn.initializers.normal(0.01))(hidden)
      family_kernels.append(family_params.raw_to_kernels(family, raw.reshape((batch,) + shape),
                                                   self.kernel_size))
    mixture = jax.nn.softmax(nn.Dense(len(self.families), name="mixture")(hidden), axis=-1)
    kernels = jnp.einsum("bf,bfij->bij", mixture, jnp.stack(family_kernels, axis=1))
    return kernels, mixture
