"""Input pipeline throughput: training images/s of the grain pipeline and of the previous loader.

Two workloads, each timed over the same batches for both loaders in one run:
  * 224 px: JPEGs of 60-300 px (generated under --root), decode + inception random-resized crop
    + flip to 224 for grain; the previous loader has no random-resized crop, so it gets its
    nearest work: decode + resize to 224 + crop_flip.
  * CIFAR-sized: the shared CIFAR-10 ImageFolder (32 px JPEGs), decode + crop_flip.
The grain pipeline uses --workers processes; the previous loader is its own single-process
pipeline (one prefetch thread). Startup (worker spawn, first batch) is excluded. The bars:
>= 300 images/s at 224 px and >= 10,000 images/s on CIFAR on 2 cores.

  python benchmarks/input_bench.py [--workers 2] [--cifar PATH]
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CIFAR = os.path.normpath(os.path.join(REPO, "..", "shared", "datasets", "cifar10"))


def baseline_module(ref: str, root: str):
  path = os.path.join(root, "baseline_data.py")
  with open(path, "w") as f:
    f.write(subprocess.check_output(["git", "show", f"{ref}:blur_adv/data.py"], cwd=REPO,
                                    text=True))
  spec = importlib.util.spec_from_file_location("baseline_data", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def images_per_s(iterator, batches: int, batch_size: int) -> float:
  next(iterator)  # Startup: worker processes, first batch.
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * batch_size / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="/tmp/blur_adv_input_bench")
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--cifar", default=CIFAR)
  parser.add_argument("--baseline", default="d65fc5b")
  parser.add_argument("--batches", type=int, default=20)
  flags = parser.parse_args()
  from benchmarks import imagenet_like  # pylint: disable=g-import-not-at-top
  from blur_adv import data  # pylint: disable=g-import-not-at-top
  os.makedirs(flags.root, exist_ok=True)
  old = baseline_module(flags.baseline, flags.root)
  folder = imagenet_like.write_folder(os.path.join(flags.root, "varied"), 2000, sizes=None)
  print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        "(other jobs share these cores: figures are lower bounds)")
  cases = (
      ("224 px", f"folder:{folder}", 224, 64, "inception_crop_flip", "crop_flip", 300),
      ("CIFAR-10", f"folder:{flags.cifar}", 32, 512, "crop_flip", "crop_flip", 10_000),
  )
  for label, name, size, batch, augment, old_augment, bar in cases:
    new_it = data.TrainIterator(data.load_source(name, "train", size), batch, seed=0,
                                augment=augment, workers=flags.workers)
    grain_rate = images_per_s(new_it, flags.batches, batch)
    new_it.close()
    old_it = old.TrainIterator(old.load_source(name, "train", size), batch, seed=0,
                               augment=old_augment)
    old_rate = images_per_s(old_it, flags.batches, batch)
    print(f"{label:9s} grain ({flags.workers} workers, {augment}): {grain_rate:8.0f} images/s  "
          f"previous loader ({old_augment}): {old_rate:8.0f} images/s  "
          f"ratio {grain_rate / old_rate:.2f}  bar {bar}: "
          f"{'met' if grain_rate >= bar else 'NOT met'}", flush=True)


if __name__ == "__main__":
  main()
