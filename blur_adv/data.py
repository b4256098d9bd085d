"""Input pipeline: datasets by name, per-process sharding, resumable deterministic order.

Dataset names:
  * `digits`      scikit-learn's bundled 8x8 digits (offline), upscaled to `image_size`.
  * `folder:PATH` an ImageFolder tree `PATH/<split>/<class>/*.{jpg,jpeg,png}`.
  * anything else a TFDS image classification dataset (`cifar10`, `mnist`, ...).

Splits accept TFDS-style slices (`train[:90%]`, `train[90%:]`, `test[:500]`).
`digits` and folders are put in a fixed pseudo-random order (independent of the
run seed) before slicing, so a slice of a class-sorted folder is still balanced.

Every source is random access, so the order of training examples is a pure
function of (seed, step): each epoch is a seeded permutation, global batch `k`
is a fixed slice of it and each process reads only its rows of that batch.
Resuming at step `k` therefore replays exactly the data an uninterrupted run
would have seen, for any number of processes. Images leave as float32 NHWC in
[0, 1]; labels as int32.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import re
import sys
import threading
from typing import Any, Iterator, Protocol

import numpy as np

_SPLIT_RE = re.compile(r"^(?P<base>[\w\-]+)(\[(?P<start>-?\d*%?):(?P<end>-?\d*%?)\])?$")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_ORDER_SEED = 0  # Fixed order of `digits`/folder examples before slicing.
_DIGITS_TEST_FRACTION = 0.2


class DatasetUnavailableError(ValueError):
  """The dataset cannot be read here (not prepared, missing, or empty)."""


class Source(Protocol):
  num_classes: int

  def __len__(self) -> int: ...

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, H, W, C] and int32 labels [n] for the given example indices."""


@dataclasses.dataclass
class ArraySource:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]
  num_classes: int

  def __len__(self) -> int:
    return len(self.labels)

  def read(self, indices):
    return self.images[indices], self.labels[indices]


@dataclasses.dataclass
class FileSource:
  """Decodes image files on demand, so a process only ever opens its own examples."""
  paths: list[str]
  labels: np.ndarray
  num_classes: int
  image_size: int

  def __len__(self) -> int:
    return len(self.paths)

  def read(self, indices):
    images = np.stack([_load_image_file(self.paths[i], self.image_size) for i in indices])
    return images, self.labels[indices]


# ---------------------------------------------------------------- splits

def parse_split(split: str, num_examples: int) -> tuple[str, slice]:
  """`'train[10%:]'` -> ('train', slice(start, stop)) in example indices."""
  match = _SPLIT_RE.match(split.replace(" ", ""))
  if not match:
    raise ValueError(f"Bad split {split!r}; expected e.g. 'train', 'train[:90%]', 'test[100:]'.")

  def bound(text: str | None, default: int) -> int:
    if not text:
      return default
    if text.endswith("%"):
      value = round(int(text[:-1]) * num_examples / 100)
    else:
      value = int(text)
    return value + num_examples if value < 0 else min(value, num_examples)

  return match["base"], slice(bound(match["start"], 0), bound(match["end"], num_examples))


def _split_base(split: str) -> str:
  match = _SPLIT_RE.match(split.replace(" ", ""))
  if not match:
    raise ValueError(f"Bad split {split!r}; expected e.g. 'train', 'train[:90%]', 'test[100:]'.")
  return match["base"]


def _fixed_order(n: int) -> np.ndarray:
  return np.random.default_rng(_ORDER_SEED).permutation(n)


# ---------------------------------------------------------------- sources

def load_source(name: str, split: str, image_size: int, data_dir: str | None = None) -> Source:
  """Opens split `split` of dataset `name`, images resized to `image_size` squared."""
  if name == "digits":
    return _digits_source(split, image_size)
  if name.startswith("folder:"):
    return _folder_source(name[len("folder:"):], split, image_size)
  return _tfds_source(name, split, image_size, data_dir)


def _resize_uint8(image: np.ndarray, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image.shape[0] == size and image.shape[1] == size:
    return image
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((size, size), Image.BILINEAR))
  return out[..., None] if channels == 1 else out


def _load_image_file(path: str, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    return _resize_uint8(np.asarray(image.convert("RGB")), size)


def _digits_source(split: str, image_size: int) -> ArraySource:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  order = _fixed_order(len(digits.target))
  num_test = round(_DIGITS_TEST_FRACTION * len(order))
  bases = {"train": order[:-num_test], "test": order[-num_test:]}
  base = _split_base(split)
  if base not in bases:
    raise ValueError(f"Unknown split {split!r} of dataset 'digits'; known: train, test.")
  _, part = parse_split(split, len(bases[base]))
  indices = bases[base][part]
  raw = np.round(digits.images[indices] * (255 / 16)).astype(np.uint8)[..., None]
  images = np.stack([_resize_uint8(image, image_size) for image in raw])
  return ArraySource(images, digits.target[indices].astype(np.int32), num_classes=10)


def _folder_source(root: str, split: str, image_size: int) -> FileSource:
  if not os.path.isdir(root):
    raise DatasetUnavailableError(f"config.dataset='folder:{root}': no such directory.")
  splits = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  base = _split_base(split)
  if base not in splits:
    raise ValueError(f"Unknown split {split!r} of folder {root}; found splits: {splits}.")
  # Classes come from all splits so that label ids agree between train and test.
  classes = sorted({c for s in splits for c in os.listdir(os.path.join(root, s))
                    if os.path.isdir(os.path.join(root, s, c))})
  paths, labels = [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(root, base, name)
    if not os.path.isdir(class_dir):
      continue
    files = sorted(f for f in os.listdir(class_dir) if f.lower().endswith(_IMAGE_EXTENSIONS))
    paths += [os.path.join(class_dir, f) for f in files]
    labels += [label] * len(files)
  if not paths:
    raise DatasetUnavailableError(f"No .jpg/.png images under {os.path.join(root, base)}/<class>/.")
  order = _fixed_order(len(paths))
  _, part = parse_split(split, len(paths))
  indices = order[part]
  return FileSource([paths[i] for i in indices], np.asarray(labels, np.int32)[indices],
                    num_classes=len(classes), image_size=image_size)


def _ensure_prepared(builder: Any, name: str, data_dir: str | None, wait: float = 5.0):
  """Prepares `builder` or fails in seconds (TFDS itself retries ~200 s when offline).

  Preparing is given a few seconds in a daemon thread: enough for test mocks, manual_dir
  datasets and cached downloads, never enough for a real download, which should be done once
  beforehand (`tfds build NAME --data_dir=DIR`), not inside a training job.
  """
  if builder.is_prepared():
    return
  outcome: dict[str, BaseException | None] = {}

  def prepare():
    try:
      builder.download_and_prepare()
      outcome["error"] = None
    except BaseException as e:  # pylint: disable=broad-except
      outcome["error"] = e

  worker = threading.Thread(target=prepare, daemon=True)
  worker.start()
  worker.join(wait)
  if outcome.get("error", RuntimeError("timed out")) is not None:
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} is not prepared in data_dir={data_dir or '~/tensorflow_datasets'} "
        f"and could not be prepared within {wait:.0f} s. Prepare it first (`tfds build {name} "
        "--data_dir=DIR`) and set config.data_dir to DIR, "
        f"or use config.dataset='folder:PATH' for an ImageFolder copy, or "
        f"config.dataset='digits' for the bundled offline dataset.")


def exit_unavailable(error: DatasetUnavailableError):
  """Prints `error` on one line and ends the process with status 1 at once.

  TFDS may have left non-daemon download threads retrying for minutes, and a normal exit waits
  for them; nothing has been written when data fails to open, so nothing is lost.
  """
  print(f"Error: {error}", file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


def _tfds_source(name: str, split: str, image_size: int, data_dir: str | None) -> ArraySource:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")  # Keep TF off accelerators JAX owns.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetUnavailableError(f"Unknown config.dataset={name!r}: not 'digits', 'folder:PATH' "
                     "or a TFDS dataset name.") from None
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ValueError(f"config.dataset={name!r} has no 'image'/'label' features.")
  _ensure_prepared(builder, name, data_dir)
  # Small datasets (CIFAR, MNIST) fit in host memory as uint8 after resizing.
  # TODO: ImageNet-scale TFDS sets need `builder.as_data_source`
  # (array_record random access) instead of this in-memory copy.
  dataset = builder.as_dataset(split=split, shuffle_files=False)
  images, labels = [], []
  for example in tfds.as_numpy(dataset):
    images.append(_resize_uint8(example["image"], image_size))
    labels.append(example["label"])
  if not images:
    raise DatasetUnavailableError(f"Split {split!r} of TFDS dataset {name!r} is empty.")
  return ArraySource(np.stack(images), np.asarray(labels, np.int32),
                     num_classes=features["label"].num_classes)


# ---------------------------------------------------------------- augmentation

def crop_flip(images: np.ndarray, rng: np.random.Generator, rows: slice,
              global_batch_size: int, pad: int = 4, mode: str = "constant") -> np.ndarray:
  """Random translation by up to `pad` pixels and horizontal flip per example.

  The image is padded by `pad` (zeros, or numpy.pad's `mode`) and a random window is cropped.
  Random draws are made for the whole global batch and `rows` picks this
  process's share, so the result does not depend on the process count.
  """
  offsets = rng.integers(0, 2 * pad + 1, size=(global_batch_size, 2))[rows]
  flips = (rng.random(global_batch_size) < 0.5)[rows]
  _, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
  out = np.empty_like(images)
  for i, ((dy, dx), flip) in enumerate(zip(offsets, flips)):
    crop = padded[i, dy:dy + h, dx:dx + w]
    out[i] = crop[:, ::-1] if flip else crop
  return out


def _no_augmentation(images, rng, rows, global_batch_size):
  del rng, rows, global_batch_size
  return images


AUGMENTATIONS = {
    "none": _no_augmentation,
    "crop_flip": crop_flip,  # 4-pixel zero-padded translations (the ResNet papers' recipe).
    # 2-pixel reflect-padded translations: the fast CIFAR recipe's (configs/cifar10_fast.py).
    "flip_translate2": functools.partial(crop_flip, pad=2, mode="reflect"),
}


# ---------------------------------------------------------------- iterators

def to_float(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / 255.0


class TrainIterator:
  """Endless per-process training batches; `position` is the next global batch index.

  The batch at position k depends only on (seed, k), so setting `position`
  from a checkpoint resumes the exact data stream. A background thread
  prepares the next `prefetch` batches.
  """

  def __init__(self, source: Source, global_batch_size: int, seed: int, *,
               process_index: int = 0, process_count: int = 1, augment: str = "none",
               position: int = 0, prefetch: int = 2):
    if global_batch_size % process_count:
      raise ValueError(f"config.batch_size={global_batch_size} is not divisible by the "
                       f"process count {process_count}.")
    if len(source) < global_batch_size:
      raise ValueError(f"config.batch_size={global_batch_size} exceeds the "
                       f"{len(source)} training examples.")
    self.source = source
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.seed = seed
    self.process_index = process_index
    self.augment = AUGMENTATIONS[augment]
    self.steps_per_epoch = len(source) // global_batch_size  # Drops the remainder.
    self._position = position
    self._prefetch = prefetch
    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self._pending: dict[int, concurrent.futures.Future] = {}

  @property
  def position(self) -> int:
    return self._position

  @position.setter
  def position(self, value: int):
    self._position = value
    self._pending.clear()

  def batch_at(self, position: int) -> dict[str, np.ndarray]:
    """The local rows of global batch `position`: a pure function of (seed, position)."""
    epoch, offset = divmod(position, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
    global_indices = order[offset * self.global_batch_size:(offset + 1) * self.global_batch_size]
    start = self.process_index * self.local_batch_size
    rows = slice(start, start + self.local_batch_size)
    images, labels = self.source.read(global_indices[rows])
    aug_rng = np.random.default_rng([self.seed, epoch, offset, 1])
    images = self.augment(images, aug_rng, rows, self.global_batch_size)
    return {"image": to_float(images), "label": labels}

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    for ahead in range(self._position, self._position + self._prefetch + 1):
      if ahead not in self._pending:
        self._pending[ahead] = self._pool.submit(self.batch_at, ahead)
    batch = self._pending.pop(self._position).result()
    self._position += 1
    return batch


def eval_batches(source: Source, global_batch_size: int, *, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `source` in order; the last batch is padded and `mask` marks real rows."""
  local = global_batch_size // process_count
  n = len(source)
  for start in range(0, n, global_batch_size):
    rows = np.arange(start + process_index * local, start + (process_index + 1) * local)
    mask = rows < n
    images, labels = source.read(np.where(mask, rows, 0))
    yield {"image": to_float(images), "label": labels, "mask": mask.astype(np.float32)}
