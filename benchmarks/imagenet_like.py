"""Generated ImageNet-like data for the input benchmarks: JPEGs of several sizes in an
ImageFolder tree, and the same examples as a TFDS dataset prepared as ArrayRecord.

Everything is written under the directory given (the benchmarks use /tmp), never the repo.
Images are smooth random colour fields plus noise, so JPEG sizes and decode cost are close to
photographs' at the same resolution.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image


def _image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
  base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), np.int16)
  noise = rng.integers(-20, 21, (height, width, 3))
  return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_folder(root: str, num_images: int, num_classes: int = 10,
                 sizes: tuple[int, int] | None = (224, 224), splits=("train",),
                 seed: int = 0) -> str:
  """`root/<split>/class_k/NNNNNN.jpg`; `sizes` (h, w) fixed, or None for random 60-300 px."""
  rng = np.random.default_rng(seed)
  for split in splits:
    for k in range(num_classes):
      os.makedirs(os.path.join(root, split, f"class_{k}"), exist_ok=True)
    for i in range(num_images):
      h, w = sizes if sizes else rng.integers(60, 301, size=2)
      path = os.path.join(root, split, f"class_{i % num_classes}", f"{i:06d}.jpg")
      if not os.path.exists(path):
        Image.fromarray(_image(rng, h, w)).save(path, quality=90)
  return root


def prepare_tfds(folder: str, data_dir: str, name: str = "imagenet_like",
                 file_format: str = "array_record") -> str:
  """Prepares `folder`'s train split as TFDS dataset `name` in `data_dir` (ImageNet's way:
  ArrayRecord; `tfrecord` for loaders that read TFDS with `as_dataset`)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  classes = sorted(os.listdir(os.path.join(folder, "train")))

  class ImagenetLike(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=classes)}), supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      for label, name in enumerate(classes):
        class_dir = os.path.join(folder, "train", name)
        for f in sorted(os.listdir(class_dir)):
          # The JPEG bytes as they are, like ImageNet's TFDS builder.
          yield f"{name}/{f}", {"image": os.path.join(class_dir, f), "label": label}

  ImagenetLike.name = name
  builder = ImagenetLike(data_dir=data_dir, file_format=file_format)
  if not builder.is_prepared():
    builder.download_and_prepare()
  return data_dir
