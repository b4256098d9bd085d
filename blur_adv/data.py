"""Input pipeline on grain: datasets by name, per-process sharding, resumable deterministic order.

Dataset names:
  * `digits`      scikit-learn's bundled 8x8 digits (offline), upscaled to `image_size`.
  * `folder:PATH` an ImageFolder tree `PATH/<split>/<class>/*.{jpg,jpeg,png}`, decoded on demand
                  (in grain's worker processes when `config.data_workers` > 0).
  * anything else a TFDS image classification dataset (`imagenet2012`, `cifar10`, ...) prepared as
                  ArrayRecord (`tfds build NAME --data_dir=DIR`), read with `as_data_source()`:
                  random access from disk, so host memory does not grow with the dataset.

Splits accept TFDS-style slices (`train[:90%]`, `train[90%:]`, `test[:500]`).
`digits` and folders are put in a fixed pseudo-random order (independent of the
run seed) before slicing, so a slice of a class-sorted folder is still balanced.

Order and resumption. Every source is random access and the training stream is a grain
`MapDataset` whose element k is this process's rows of global batch k: epoch e is a permutation
seeded by (seed, e), global batch k is a fixed slice of its epoch (the remainder is dropped),
example row r of the global batch is cropped with an RNG seeded by (seed, k, r) and batch-level
augmentations draw for the whole global batch from (seed, k). Element k is therefore a pure
function of (seed, k), whatever the process count; grain's reading threads and worker processes
(`config.data_workers`) only compute elements ahead, in order. The checkpoint stores k
(`{"position": k}`, see `blur_adv/checkpoint.py`) and resuming slices the dataset at k. This is
used instead of grain's own iterator state on purpose: grain saves one state per process
(`process_i-of-n`) holding per-worker positions, so it cannot be restored with another process
or worker count, while k can, and replays exactly the global batches an uninterrupted run sees.
One element per batch (not per example) keeps grain's per-element overhead off small images.

Bad input. A truncated or corrupt image file in a folder dataset stops the run when the file
is first read, with a one-line `CorruptImageError` naming the file (`main` prints it and exits
with status 1); no file is skipped, because skipping would change the batches a resumed run
sees. Replace or delete the file and rerun: training resumes from the last checkpoint.

Images leave as float32 NHWC in [0, 1]; labels as int32.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

_SPLIT_RE = re.compile(r"^(?P<base>[\w\-]+)(\[(?P<start>-?\d*%?):(?P<end>-?\d*%?)\])?$")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_ORDER_SEED = 0  # Fixed order of `digits`/folder examples before slicing.
# Seeds the alternating flips' first epoch beside the run seed. Four seed words with a non-zero
# last one: numpy's SeedSequence pads shorter keys with zeros, so no (seed, epoch) order or
# (seed, step, row) crop can share this stream.
_ALTERNATING_FLIP_STREAM = (1, 1, 1)
_DIGITS_TEST_FRACTION = 0.2
# Batches each reading thread (or worker process) keeps ready: enough to hide a slow step,
# few enough that host memory stays a handful of batches.
_PREFETCH_BATCHES = 2


class DatasetUnavailableError(ValueError):
  """The dataset cannot be read here (not prepared, missing, empty or corrupt)."""


class CorruptImageError(DatasetUnavailableError):
  """An image file of a folder dataset cannot be decoded."""


# ---------------------------------------------------------------- raw records (grain sources)
# Each is a grain random-access source: `len()` and `[i]` -> (uint8 image [H, W, C] as stored,
# int label). They are picklable, so grain's worker processes open and decode their own examples.

@dataclasses.dataclass(frozen=True)
class ArrayRecords:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index: int):
    return self.images[index], int(self.labels[index])


@dataclasses.dataclass(frozen=True)
class FileRecords:
  """Image files decoded on access."""
  paths: Sequence[str]
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int):
    return load_image_file(self.paths[index]), int(self.labels[index])


@dataclasses.dataclass(frozen=True)
class TfdsRecords:
  """A TFDS ArrayRecord data source (`builder.as_data_source`); decodes on access."""
  source: Any

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int):
    example = self.source[index]
    image = np.asarray(example["image"])
    return (image if image.ndim == 3 else image[..., None]), int(example["label"])


def load_image_file(path: str) -> np.ndarray:
  """uint8 RGB [H, W, 3]; a file PIL cannot decode fully is a one-line CorruptImageError."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      # convert() copies even an RGB image: skipped, it is ~15% of a CIFAR JPEG's decode.
      return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
  except (OSError, SyntaxError, ValueError) as e:  # What PIL raises for bad or truncated files.
    raise CorruptImageError(f"Cannot decode image file {path}: {e}") from None


# ---------------------------------------------------------------- sources

@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset split: raw records plus the deterministic (evaluation) preprocessing.

  `read` and `example` give images resized to `image_size` squared: the whole image, or with
  `crop_fraction` < 1 a centre crop of that share of the shorter side (ImageNet's 256 -> 224 is
  0.875).
  """
  records: Any  # ArrayRecords | FileRecords | TfdsRecords
  num_classes: int
  image_size: int
  crop_fraction: float = 1.0

  def __len__(self) -> int:
    return len(self.records)

  @property
  def labels(self) -> np.ndarray:
    """Every label, in order (array and folder sources; TFDS would have to decode every image)."""
    return self.records.labels

  def example(self, index: int) -> tuple[np.ndarray, int]:
    image, label = self.records[int(index)]
    return center_crop_resize(image, self.image_size, self.crop_fraction), label

  def read(self, indices) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, S, S, C] and int32 labels [n] for the given example indices."""
    examples = [self.example(i) for i in indices]
    return (np.stack([image for image, _ in examples]),
            np.asarray([label for _, label in examples], np.int32))


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
  return parse_split(split, 0)[0]


def _fixed_order(n: int) -> np.ndarray:
  return np.random.default_rng(_ORDER_SEED).permutation(n)


def load_source(name: str, split: str, image_size: int, data_dir: str | None = None,
                crop_fraction: float = 1.0) -> Source:
  """Opens split `split` of dataset `name`; see `Source` for `image_size` and `crop_fraction`."""
  if name == "digits":
    records, num_classes = _digits_records(split)
  elif name.startswith("folder:"):
    records, num_classes = _folder_records(name[len("folder:"):], split)
  else:
    records, num_classes = _tfds_records(name, split, data_dir)
  return Source(records, num_classes, image_size, crop_fraction)


def _digits_records(split: str) -> tuple[ArrayRecords, int]:
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
  return ArrayRecords(raw, digits.target[indices].astype(np.int32)), 10


def _folder_records(root: str, split: str) -> tuple[FileRecords, int]:
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
  _, part = parse_split(split, len(paths))
  indices = _fixed_order(len(paths))[part]
  records = FileRecords([paths[i] for i in indices], np.asarray(labels, np.int32)[indices])
  return records, len(classes)


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
      builder.download_and_prepare(file_format="array_record")
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
        "--file_format=array_record --data_dir=DIR`) and set config.data_dir to DIR, "
        f"or use config.dataset='folder:PATH' for an ImageFolder copy, or "
        f"config.dataset='digits' for the bundled offline dataset.")


def exit_unavailable(error: DatasetUnavailableError):
  """Prints `error` on one line and ends the process with status 1 at once.

  TFDS may have left non-daemon download threads retrying for minutes, and a normal exit waits
  for them; nothing has been written when data fails to open, so nothing is lost.
  """
  print(f"Error: {error}", file=sys.stderr, flush=True)
  os._exit(1)  # pylint: disable=protected-access


def _tfds_records(name: str, split: str, data_dir: str | None) -> tuple[TfdsRecords, int]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetUnavailableError(f"Unknown config.dataset={name!r}: not 'digits', 'folder:PATH' "
                                  "or a TFDS dataset name.") from None
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ValueError(f"config.dataset={name!r} has no 'image'/'label' features.")
  _ensure_prepared(builder, name, data_dir)
  file_format = builder.info.file_format
  if file_format is not None and file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise DatasetUnavailableError(
        f"TFDS dataset {name!r} in data_dir={data_dir} is prepared as {file_format.value}, "
        f"which has no random access; rebuild it with "
        f"`tfds build {name} --file_format=array_record`.")
  source = builder.as_data_source(split=split)
  if not len(source):  # pylint: disable=g-explicit-length-test
    raise DatasetUnavailableError(f"Split {split!r} of TFDS dataset {name!r} is empty.")
  return TfdsRecords(source), features["label"].num_classes


# ---------------------------------------------------------------- per-example preprocessing

def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image.shape[:2] == (height, width):
    return image
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out[..., None] if channels == 1 else out


def center_crop_resize(image: np.ndarray, size: int, crop_fraction: float = 1.0) -> np.ndarray:
  """Resizes to `size` squared; with `crop_fraction` < 1 first resizes the shorter side to
  size / crop_fraction and keeps the centre size x size (ImageNet eval: 256 -> 224 at 0.875)."""
  if crop_fraction >= 1.0:
    return _resize(image, size, size)
  h, w = image.shape[:2]
  scale = size / crop_fraction / min(h, w)
  h, w = max(size, round(h * scale)), max(size, round(w * scale))
  image = _resize(image, h, w)
  top, left = (h - size) // 2, (w - size) // 2
  return image[top:top + size, left:left + size]


def crop_flip(images: np.ndarray, rng: np.random.Generator, rows: slice,
              global_batch_size: int, pad: int = 4, mode: str = "constant",
              flips: np.ndarray | None = None) -> np.ndarray:
  """Random translation by up to `pad` pixels and horizontal flip per example of a batch.

  The images are padded by `pad` (zeros, or numpy.pad's `mode`) and a random window is cropped.
  Random draws are made for the whole global batch and `rows` picks this process's share, so
  the result does not depend on the process count. `flips` (this process's rows), if given,
  replaces the random flips (see `alternating_flips`).
  """
  offsets = rng.integers(0, 2 * pad + 1, size=(global_batch_size, 2))[rows]
  random_flips = (rng.random(global_batch_size) < 0.5)[rows]  # Drawn either way: same stream.
  flips = random_flips if flips is None else flips
  assert len(flips) == len(images), (len(flips), len(images))
  _, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
  out = np.empty_like(images)
  for i, ((dy, dx), flip) in enumerate(zip(offsets, flips)):
    crop = padded[i, dy:dy + h, dx:dx + w]
    out[i] = crop[:, ::-1] if flip else crop
  return out


def inception_crop_flip(image: np.ndarray, rng: np.random.Generator, size: int,
                        area: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        attempts: int = 10) -> np.ndarray:
  """Inception-style random-resized crop to `size` squared, then a random horizontal flip.

  A window of 8%-100% of the image area and aspect ratio in [3/4, 4/3] (log-uniform) is drawn
  up to `attempts` times; if none fits, the centre crop of the largest window within the ratio
  range is used (the torchvision / big_vision convention).
  """
  h, w = image.shape[:2]
  for _ in range(attempts):
    target = h * w * rng.uniform(*area)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      break
  else:
    aspect = w / h
    if aspect < ratio[0]:
      cw, ch = w, round(w / ratio[0])
    elif aspect > ratio[1]:
      cw, ch = round(h * ratio[1]), h
    else:
      cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
  out = _resize(image[top:top + ch, left:left + cw], size, size)
  return out[:, ::-1] if rng.random() < 0.5 else out


@functools.lru_cache(maxsize=2)  # One run's seed (two for a test comparing seeds).
def _first_epoch_flips(seed: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, *_ALTERNATING_FLIP_STREAM]).random(n) < 0.5


def alternating_flips(seed: int, epoch: int, indices: np.ndarray, n: int) -> np.ndarray:
  """Whether each example (by index into a source of `n`) is mirrored in `epoch`.

  The speedrun's derandomized flip (Jordan 2024, "airbench"): a random choice per example in
  epoch 0, inverted in every odd epoch, so any two consecutive epochs show each example once
  each way instead of the same way half the time.
  """
  return _first_epoch_flips(seed, n)[indices] ^ bool(epoch % 2)


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Training preprocessing: `crop(raw image, rng, size)` per example (default: the evaluation
  resize/centre crop), then `batch(images, rng, rows, global_batch_size)` on the stacked batch.
  The per-example RNG is seeded by (seed, step, row), the batch RNG by (seed, step). With
  `alternating_flip`, `batch` also gets `flips=` from `alternating_flips` (this process's rows)."""
  crop: Callable[[np.ndarray, np.random.Generator, int], np.ndarray] | None = None
  batch: Callable[..., np.ndarray] | None = None
  alternating_flip: bool = False


AUGMENTATIONS: dict[str, Augmentation] = {
    "none": Augmentation(),
    # 4-pixel zero-padded translations and flips (the ResNet papers' CIFAR recipe).
    "crop_flip": Augmentation(batch=crop_flip),
    # 2-pixel reflect-padded translations: the fast CIFAR recipe's first versions.
    "flip_translate2": Augmentation(batch=functools.partial(crop_flip, pad=2, mode="reflect")),
    # The same with alternating flips: the fast CIFAR recipe's (configs/cifar10_fast.py).
    "alternating_flip_translate2": Augmentation(
        batch=functools.partial(crop_flip, pad=2, mode="reflect"), alternating_flip=True),
    # Random-resized crop of the raw image and flip: the ImageNet recipe (configs/imagenet.py).
    "inception_crop_flip": Augmentation(crop=inception_crop_flip),
}


def to_float(images: np.ndarray) -> np.ndarray:
  return images.astype(np.float32) / 255.0


# ---------------------------------------------------------------- grain pipelines

@functools.lru_cache(maxsize=2)  # The current epoch and, at a boundary, the next.
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n)


@dataclasses.dataclass(frozen=True)
class _TrainBatch:
  """Element k of one process's training stream: its rows of global batch k."""
  source: Source
  augment: str
  global_batch_size: int
  local_batch_size: int
  process_index: int
  seed: int
  steps_per_epoch: int

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    epoch, offset = divmod(step, self.steps_per_epoch)
    first = self.process_index * self.local_batch_size
    rows = slice(first, first + self.local_batch_size)  # This process's rows of the batch.
    start = offset * self.global_batch_size
    indices = _epoch_order(self.seed, epoch, len(self.source))[start:start + self.global_batch_size]
    augment = AUGMENTATIONS[self.augment]
    images, labels = [], []
    for row, index in zip(range(rows.start, rows.stop), indices[rows]):
      image, label = self.source.records[index]
      if augment.crop is None:
        image = center_crop_resize(image, self.source.image_size, self.source.crop_fraction)
      else:
        image = augment.crop(image, np.random.default_rng([self.seed, step, row]),
                             self.source.image_size)
      images.append(image)
      labels.append(label)
    images = np.stack(images)
    if augment.batch is not None:
      kwargs = {}
      if augment.alternating_flip:
        kwargs["flips"] = alternating_flips(self.seed, epoch, indices[rows], len(self.source))
      images = augment.batch(images, np.random.default_rng([self.seed, step]), rows,
                             self.global_batch_size, **kwargs)
    return {"image": images, "label": np.asarray(labels, np.int32)}


def _batches(batched: Any, workers: int) -> Iterator[dict[str, np.ndarray]]:
  """Iterates a grain MapDataset of batches in order: threads, plus `workers` processes."""
  import grain  # pylint: disable=g-import-not-at-top
  dataset = batched.to_iter_dataset(grain.ReadOptions(
      num_threads=max(1, min(4, os.cpu_count() or 1)),
      prefetch_buffer_size=_PREFETCH_BATCHES))
  if workers:
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():  # Outside an absl app (tests, notebooks): grain's defaults.
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=_PREFETCH_BATCHES))
  return iter(dataset)


class TrainIterator:
  """Endless per-process training batches; `position` is the next global batch index.

  The batch at position k depends only on (seed, k) (see the module docstring), so starting at a
  checkpoint's `position` resumes the exact data stream, for any process or worker count.
  """

  def __init__(self, source: Source, global_batch_size: int, seed: int, *,
               process_index: int = 0, process_count: int = 1, augment: str = "none",
               position: int = 0, workers: int = 0):
    import grain  # pylint: disable=g-import-not-at-top
    if global_batch_size % process_count:
      raise ValueError(f"config.batch_size={global_batch_size} is not divisible by the "
                       f"process count {process_count}.")
    if len(source) < global_batch_size:
      raise ValueError(f"config.batch_size={global_batch_size} exceeds the "
                       f"{len(source)} training examples.")
    if augment not in AUGMENTATIONS:
      raise ValueError(f"Unknown augmentation {augment!r}; known: {sorted(AUGMENTATIONS)}.")
    self.local_batch_size = global_batch_size // process_count
    self.steps_per_epoch = len(source) // global_batch_size  # Drops the remainder.
    batch = _TrainBatch(source, augment, global_batch_size, self.local_batch_size,
                        process_index, seed, self.steps_per_epoch)
    # Endless: element k is computed from k alone (the length is only an upper bound).
    self._dataset = grain.MapDataset.range(sys.maxsize).map(batch)
    self._workers = workers
    self._position = position
    self._iterator = None

  @property
  def position(self) -> int:
    return self._position

  def batch_at(self, position: int) -> dict[str, np.ndarray]:
    """The local rows of global batch `position`: a pure function of (seed, position)."""
    batch = self._dataset[position]
    return {"image": to_float(batch["image"]), "label": batch["label"]}

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      self._iterator = _batches(self._dataset[self._position:], self._workers)
    batch = next(self._iterator)
    self._position += 1
    return {"image": to_float(batch["image"]), "label": batch["label"]}

  def close(self):
    """Stops grain's worker processes (also done on garbage collection)."""
    if self._iterator is not None and hasattr(self._iterator, "close"):
      self._iterator.close()
    self._iterator = None


@dataclasses.dataclass(frozen=True)
class _EvalBatch:
  """Batch b of one pass in order: this process's rows, indices past the end padded with 0."""
  source: Source
  global_batch_size: int
  local_batch_size: int
  process_index: int

  def __call__(self, b: int) -> dict[str, np.ndarray]:
    start = b * self.global_batch_size + self.process_index * self.local_batch_size
    rows = np.arange(start, start + self.local_batch_size)
    mask = rows < len(self.source)
    images, labels = self.source.read(np.where(mask, rows, 0))
    return {"image": images, "label": labels, "mask": mask.astype(np.float32)}


def eval_batches(source: Source, global_batch_size: int, *, process_index: int = 0,
                 process_count: int = 1, workers: int = 0) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `source` in order; the last batch is padded and `mask` marks real rows."""
  import grain  # pylint: disable=g-import-not-at-top
  num_batches = -(-len(source) // global_batch_size)
  batch = _EvalBatch(source, global_batch_size, global_batch_size // process_count, process_index)
  iterator = _batches(grain.MapDataset.range(num_batches).map(batch), workers)
  try:
    for out in iterator:
      yield {**out, "image": to_float(out["image"])}
  finally:
    if hasattr(iterator, "close"):
      iterator.close()
