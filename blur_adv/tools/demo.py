"""Writes a picture of every kernel family applied to a bundled photo, with its blur measures.

  python -m blur_adv.demo --out=blur_families.png
"""

import sys

from absl import app, flags
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import skimage
import skimage.data

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import kernels, measures



def family_examples(size):
  """One representative kernel per family, by display name."""
  logits = np.random.default_rng(0).normal(scale=2.0, size=(size, size))
  shake = jnp.array([[-5.0, -2.0], [-1.0, 3.0], [2.0, -1.0], [6.0, 2.0]])
  return {
      "identity": kernels.identity(size),
      "gaussian s=2.5": kernels.gaussian(size, 2.5),
      "anisotropic 4/1 @30deg": kernels.anisotropic_gaussian(size, 4.0, 1.0, np.pi / 6),
      "defocus r=5": kernels.defocus(size, 5.0),
      "motion L=15 @20deg": kernels.motion(size, 15.0, np.deg2rad(20.0)),
      "camera shake": kernels.motion_path(size, shake),
      "box w=7": kernels.box(size, 7.0),
      "free-form": kernels.free_form(logits),
  }


def render(photo, examples, path):
  names = list(examples)
  stacked = jnp.stack([examples[n] for n in names])
  batch = jnp.broadcast_to(photo, (len(names),) + photo.shape)
  blurred = np.asarray(blur_lib.blur(batch, stacked))
  ssim = np.asarray(measures.ssim(batch, blurred))
  spread = np.asarray(measures.kernel_spread(stacked))
  figure, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.6))
  for column, name in enumerate(names):
    axes[0, column].imshow(np.clip(blurred[column], 0, 1))
    axes[0, column].set_title(f"{name}\nSSIM {ssim[column]:.3f}", fontsize=9)
    axes[1, column].imshow(np.asarray(stacked[column]), cmap="magma")
    axes[1, column].set_title(f"kernel, spread {spread[column]:.1f} px^2", fontsize=9)
  for axis in axes.ravel():
    axis.axis("off")
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)
  return dict(zip(names, ssim))


def run():
  """The command line; its flags are defined here, so importing this module defines none."""
  key = dict(module_name=sys.argv[0])  # So --help lists them, also behind blur_adv/demo.py.
  out = flags.DEFINE_string("out", "blur_families.png", "Where to write the PNG.", **key)
  size = flags.DEFINE_integer("kernel_size", 21, "Odd kernel size used by every family.", **key)

  def main(argv):
    del argv
    photo = skimage.img_as_float32(skimage.data.chelsea())[::2, ::2]
    ssim = render(jnp.asarray(photo), family_examples(size.value), out.value)
    for name, value in ssim.items():
      print(f"{name:>24s}  SSIM {value:.4f}")
    print(f"wrote {out.value}")

  app.run(main)


if __name__ == "__main__":
  run()
