"""Peak host memory of the input pipeline against dataset size.

Generates ImageNet-like data under --root (/tmp by default): 2,000 and 20,000 224-px JPEGs as an
ImageFolder tree and as a TFDS ArrayRecord dataset, then measures the peak RSS (GNU time's
maximum resident set of a fresh process) of
  * a 200-step `configs/imagenet.py:runlocal` training run (trainer `standard`) on each, and
  * 200 training batches (`crop_flip`, 64 px, batch 32) through the grain pipeline and through
    the previous loader (`--baseline` REF: `git show REF:blur_adv/data.py`),
    which cannot run the ImageNet config (no random-resized crop, no ResNet-50) and reads TFDS
    with `as_dataset()`, so it gets a TFRecord copy of the same examples.
The bar: peak RSS on 20,000 images within 15% of that on 2,000.

  python benchmarks/input_memory.py            # about 15 min on 2 busy cores (data generation
                                               # is done once and reused)
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

LOADER_CHILD = r"""
import importlib.util, sys
path, name, data_dir, steps = sys.argv[1], sys.argv[2], sys.argv[3] or None, int(sys.argv[4])
spec = importlib.util.spec_from_file_location("loader_under_test", path)
data = importlib.util.module_from_spec(spec); sys.modules[spec.name] = data
spec.loader.exec_module(data)
source = data.load_source(name, "train", 64, data_dir)
it = data.TrainIterator(source, 32, seed=0, augment="crop_flip")
for _ in range(steps):
  next(it)
"""


def peak_rss_mb(args, env=None) -> float:
  """Runs `args` to completion under GNU time; its peak RSS (maximum resident set) in MiB.

  Not os.wait4 of our own child: a forked child inherits this process's RSS (TensorFlow is
  loaded here after preparing TFDS data) until it execs, and ru_maxrss would report that.
  """
  result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M"] + args, cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
  if result.returncode != 0:
    raise RuntimeError(f"{args} failed:\n{result.stderr[-3000:]}")
  return int(result.stderr.rsplit("maxrss_kib=", 1)[1].split()[0]) / 1024


def train_args(dataset, data_dir, workdir, steps):
  return [sys.executable, "-m", "blur_adv.main", "--config=configs/imagenet.py:runlocal",
          f"--workdir={workdir}", f"--config.dataset={dataset}",
          f"--config.num_train_steps={steps}", "--config.train_split=train",
          "--config.eval_split=train[:128]", "--config.eval_every_steps=100",
          "--config.checkpoint_every_steps=100", "--config.log_every_steps=50",
          # The input pipeline is what is measured: the plain trainer keeps 200 steps short.
          "--config.trainer=standard"] + (
              [f"--config.data_dir={data_dir}"] if data_dir else [])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="/tmp/blur_adv_input_memory")
  parser.add_argument("--sizes", default="2000,20000")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--baseline", default="d65fc5b", help="git ref of the loader to compare")
  parser.add_argument("--skip_train", action="store_true")
  flags = parser.parse_args()
  from benchmarks import imagenet_like  # pylint: disable=g-import-not-at-top
  os.makedirs(flags.root, exist_ok=True)
  old_path = os.path.join(flags.root, "baseline_data.py")
  with open(old_path, "w") as f:
    f.write(subprocess.check_output(["git", "show", f"{flags.baseline}:blur_adv/data.py"],
                                    cwd=REPO, text=True))
  new_path = os.path.join(REPO, "blur_adv", "data.py")
  env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
  results = {}
  for n in map(int, flags.sizes.split(",")):
    folder = os.path.join(flags.root, f"folder_{n}")
    tfds_dir = os.path.join(flags.root, f"tfds_{n}")
    start = time.time()
    imagenet_like.write_folder(folder, n, splits=("train",))
    imagenet_like.prepare_tfds(folder, tfds_dir)
    # The baseline reads TFDS with as_dataset(), which ArrayRecord files do not support.
    tfrecord_dir = imagenet_like.prepare_tfds(folder, tfds_dir + "_tfrecord",
                                              file_format="tfrecord")
    print(f"data for n={n}: {time.time() - start:.0f} s", flush=True)
    for kind, name, data_dir, baseline_dir in (
        ("folder", f"folder:{folder}", "", ""),
        ("tfds", "imagenet_like", tfds_dir, tfrecord_dir)):
      row = {}
      for label, path, where in (("grain_loader", new_path, data_dir),
                                 ("baseline_loader", old_path, baseline_dir)):
        row[label] = peak_rss_mb([sys.executable, "-c", LOADER_CHILD, path, name, where,
                                  str(flags.steps)], env)
      if not flags.skip_train:
        workdir = os.path.join(flags.root, f"run_{kind}_{n}_{time.time_ns()}")
        start = time.time()
        row["grain_train"] = peak_rss_mb(train_args(name, data_dir, workdir, flags.steps), env)
        row["train_s"] = round(time.time() - start, 1)
      results[f"{kind}_{n}"] = row
      print(f"{kind:6s} n={n:6d} peak RSS MiB: " + ", ".join(
          f"{k}={v:.0f}" for k, v in row.items()), flush=True)
  sizes = list(map(int, flags.sizes.split(",")))
  small, large = min(sizes), max(sizes)
  print(f"\nratio of peak RSS, {large} vs {small} images (bar: grain <= 1.15):")
  for kind in ("folder", "tfds"):
    for label in ("grain_train", "grain_loader", "baseline_loader"):
      if label in results[f"{kind}_{small}"]:
        ratio = results[f"{kind}_{large}"][label] / results[f"{kind}_{small}"][label]
        print(f"  {kind:6s} {label:16s} {ratio:.3f}")
  print(json.dumps(results))


if __name__ == "__main__":
  main()
