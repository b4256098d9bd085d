"""Input pipeline: splits, sources, sharding, determinism, resumption, fast failures."""
import os
import time

import numpy as np
import pytest
from PIL import Image

from blur_adv import data


def make_image_folder(root, splits=("train",), classes=("cat", "dog", "emu"), per_class=6):
  """Writes tiny PNGs whose constant gray value encodes (class, index)."""
  for split in splits:
    for c, name in enumerate(classes):
      os.makedirs(os.path.join(root, split, name))
      for i in range(per_class):
        pixel = np.full((5, 7, 3), 10 * c + i, np.uint8)
        Image.fromarray(pixel).save(os.path.join(root, split, name, f"{i:04d}.png"))
  return str(root)


@pytest.mark.parametrize("split,expected", [
    ("train", ("train", slice(0, 200))),
    ("train[:90%]", ("train", slice(0, 180))),
    ("train[90%:]", ("train", slice(180, 200))),
    ("test[10:-10]", ("test", slice(10, 190))),
])
def test_parse_split(split, expected):
  assert data.parse_split(split, 200) == expected


def test_parse_split_rejects_garbage():
  with pytest.raises(ValueError, match="Bad split"):
    data.parse_split("train[::2]", 10)


def test_digits_splits_are_disjoint_float_images_in_unit_range():
  train = data.load_source("digits", "train", 16)
  test = data.load_source("digits", "test", 16)
  assert len(train) + len(test) == 1797 and train.num_classes == 10
  images, labels = train.read(np.arange(5))
  assert images.shape == (5, 16, 16, 1) and images.dtype == np.uint8
  head = data.load_source("digits", "train[:90%]", 16)
  tail = data.load_source("digits", "train[90%:]", 16)
  assert len(head) + len(tail) == len(train)
  np.testing.assert_array_equal(np.concatenate([head.labels, tail.labels]), train.labels)
  batch = next(data.TrainIterator(train, 8, seed=0))
  assert batch["image"].dtype == np.float32 and 0 <= batch["image"].min() <= batch["image"].max() <= 1
  assert labels.dtype == np.int32


def test_folder_source_labels_sizes_and_balanced_slices(tmp_path):
  root = make_image_folder(tmp_path, splits=("train", "val"))
  source = data.load_source(f"folder:{root}", "train", 4)
  assert len(source) == 18 and source.num_classes == 3
  images, labels = source.read(np.arange(len(source)))
  assert images.shape == (18, 4, 4, 3)
  # The gray value written encodes the class, so labels must match the pixels.
  np.testing.assert_array_equal(images[:, 0, 0, 0] // 10, labels)
  # A slice of the class-sorted folder still holds several classes.
  tail = data.load_source(f"folder:{root}", "train[50%:]", 4)
  assert len(tail) == 9 and len(set(tail.labels.tolist())) > 1
  assert len(data.load_source(f"folder:{root}", "val", 4)) == 18


def test_folder_errors_name_the_problem(tmp_path):
  with pytest.raises(data.DatasetUnavailableError, match="no such directory"):
    data.load_source(f"folder:{tmp_path}/missing", "train", 4)
  root = make_image_folder(tmp_path / "f")
  with pytest.raises(ValueError, match="found splits: \\['train'\\]"):
    data.load_source(f"folder:{root}", "test", 4)


def _global_batches(source, batch_size, process_count, positions, augment="crop_flip"):
  """Concatenates every process's local rows of each global batch."""
  iters = [data.TrainIterator(source, batch_size, seed=3, process_index=p,
                              process_count=process_count, augment=augment)
           for p in range(process_count)]
  return [np.concatenate([it.batch_at(k)["image"] for it in iters]) for k in positions]


def test_train_order_is_independent_of_process_count_and_resumable():
  source = data.load_source("digits", "train", 12)
  positions = [0, 1, 44, 45]  # Crosses an epoch boundary (44 steps per epoch).
  one = _global_batches(source, 32, 1, positions)
  four = _global_batches(source, 32, 4, positions)
  for a, b in zip(one, four):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(one[0], one[2])  # Epochs are reshuffled.

  stream = data.TrainIterator(source, 32, seed=3, augment="crop_flip")
  uninterrupted = [next(stream)["label"] for _ in range(6)]
  resumed = data.TrainIterator(source, 32, seed=3, augment="crop_flip", position=3)
  for expected in uninterrupted[3:]:
    np.testing.assert_array_equal(next(resumed)["label"], expected)
  assert resumed.position == 6


def test_alternating_flips_mirror_each_example_once_in_any_two_consecutive_epochs():
  n, indices = 1000, np.arange(1000)
  epochs = [data.alternating_flips(7, e, indices, n) for e in range(4)]
  assert 0.45 < epochs[0].mean() < 0.55  # A random choice per example in the first epoch...
  np.testing.assert_array_equal(epochs[1], ~epochs[0])  # ...inverted in every odd epoch.
  np.testing.assert_array_equal(epochs[2], epochs[0])
  np.testing.assert_array_equal(epochs[3], epochs[1])
  assert not np.array_equal(data.alternating_flips(8, 0, indices, n), epochs[0])  # Per seed.

  # Through the training stream: each example shifted as the random translation says and
  # mirrored as `alternating_flips` says for that epoch, whatever the process count.
  source = data.load_source("digits", "train", 12)
  steps_per_epoch = len(source) // 32
  positions = [0, steps_per_epoch, 2 * steps_per_epoch + 3]
  one = _global_batches(source, 32, 1, positions, augment="alternating_flip_translate2")
  two = _global_batches(source, 32, 2, positions, augment="alternating_flip_translate2")
  for position, batch, batch_two in zip(positions, one, two):
    np.testing.assert_array_equal(batch, batch_two)
    epoch, offset = divmod(position, steps_per_epoch)
    order = data._epoch_order(3, epoch, len(source))[offset * 32:(offset + 1) * 32]
    flips = data.alternating_flips(3, epoch, order, len(source))
    assert 0 < flips.sum() < 32
    expected = data.crop_flip(source.read(order)[0], np.random.default_rng([3, position]),
                              slice(0, 32), 32, pad=2, mode="reflect", flips=flips)
    np.testing.assert_array_equal(batch, data.to_float(expected))


def test_eval_batches_cover_each_example_once_across_processes():
  source = data.load_source("digits", "test", 8)  # 359 examples: the last batch is padded.
  seen = []
  for p in range(2):
    for batch in data.eval_batches(source, 64, process_index=p, process_count=2):
      seen.append(batch["label"][batch["mask"] > 0])
  assert sorted(np.concatenate(seen).tolist()) == sorted(source.labels.tolist())


def test_tfds_source_on_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=20):
    source = data.load_source("cifar10", "train", 16)
  images, labels = source.read(np.arange(4))
  assert len(source) == 20 and source.num_classes == 10
  assert images.shape == (4, 16, 16, 3) and labels.shape == (4,)


def test_unprepared_tfds_dataset_fails_fast_with_advice(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # Stand-in for TFDS's minutes of download retries, without sending anything anywhere.
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda *a, **k: time.sleep(600))
  start = time.time()
  with pytest.raises(data.DatasetUnavailableError, match="folder:PATH.*digits"):
    data.load_source("cifar10", "train", 32, data_dir=str(tmp_path))
  assert time.time() - start < 10


def test_unknown_tfds_name_is_a_clear_error():
  with pytest.raises(ValueError, match="config.dataset='no_such_dataset'"):
    data.load_source("no_such_dataset", "train", 32)


def make_jpeg_folder(root, sizes=((60, 90), (300, 200), (120, 120), (224, 260)), classes=3,
                     splits=("train", "validation")):
  """ImageNet-like: JPEGs of several sizes, `classes` classes, one image per size and class."""
  rng = np.random.default_rng(0)
  for split in splits:
    for c in range(classes):
      os.makedirs(os.path.join(root, split, f"n{c:08d}"))
      for i, (h, w) in enumerate(sizes):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, f"n{c:08d}", f"{i}.jpg"))
  return str(root)


def test_worker_processes_replay_the_in_process_batches(tmp_path):
  root = make_jpeg_folder(tmp_path)
  source = data.load_source(f"folder:{root}", "train", 16)
  kwargs = dict(seed=5, augment="inception_crop_flip")
  expected = [data.TrainIterator(source, 4, **kwargs).batch_at(k) for k in (2, 3, 4)]
  stream = data.TrainIterator(source, 4, position=2, workers=2, **kwargs)
  try:
    for batch in expected:
      got = next(stream)
      np.testing.assert_array_equal(got["image"], batch["image"])
      np.testing.assert_array_equal(got["label"], batch["label"])
  finally:
    stream.close()
  assert stream.position == 5


def test_center_crop_is_resize_shorter_side_then_centre_window():
  image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
  out = data.center_crop_resize(image, 224, 0.875)
  # Independent reference: PIL resize of the shorter side to 256, then the centre 224 square.
  resized = np.asarray(Image.fromarray(image).resize((341, 256), Image.BILINEAR))
  np.testing.assert_array_equal(out, resized[16:240, 58:282])
  assert data.center_crop_resize(image, 32).shape == (32, 32, 3)


def test_inception_crop_is_a_resized_window_or_its_mirror():
  image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
  out = data.inception_crop_flip(image, np.random.default_rng(3), 48)
  again = data.inception_crop_flip(image, np.random.default_rng(3), 48)
  assert out.shape == (48, 48, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, again)
  # A window of the whole area at the image's own aspect ratio is the whole image.
  whole = data.inception_crop_flip(image, np.random.default_rng(1), 48, area=(1.0, 1.0),
                                   ratio=(4 / 3, 4 / 3))
  reference = np.asarray(Image.fromarray(image).resize((48, 48), Image.BILINEAR))
  assert np.array_equal(whole, reference) or np.array_equal(whole, reference[:, ::-1])
  crops = [data.inception_crop_flip(image, np.random.default_rng(s), 48) for s in range(4)]
  assert len({c.tobytes() for c in crops}) == 4  # Seeds give different windows.


def test_corrupt_image_is_a_one_line_error_naming_the_file(tmp_path):
  root = make_jpeg_folder(tmp_path, sizes=((40, 40),) * 3, splits=("train",))
  bad = os.path.join(root, "train", "n00000001", "1.jpg")
  with open(bad, "rb") as f:
    head = f.read(200)
  with open(bad, "wb") as f:
    f.write(head)  # Truncated.
  source = data.load_source(f"folder:{root}", "train", 16)
  with pytest.raises(data.CorruptImageError, match=f"Cannot decode image file {bad}: "):
    source.read(np.arange(len(source)))
  with pytest.raises(data.CorruptImageError) as error:
    for _ in data.TrainIterator(source, 9, seed=0):  # Through grain's reading threads.
      pass
  assert bad in str(error.value) and "\n" not in str(error.value)
