"""CIFAR-10 with a CIFAR ResNet-20, 45k/5k train/validation carved from `train`.

  python -m blur_adv.main --config=configs/cifar10.py --workdir=/tmp/c10
  # The ImageFolder copy instead of TFDS (no download needed):
  python -m blur_adv.main --config=configs/cifar10.py:folder --workdir=/tmp/c10 \
      --config.dataset=folder:../shared/datasets/cifar10
  # Seconds-long smoke run: add ",runlocal", e.g. --config=configs/cifar10.py:folder,runlocal

Arguments after ':' are comma separated: `folder` reads the ImageFolder copy,
`runlocal` shrinks the run.
"""
import os

from configs import default

# The shared ImageFolder copy of CIFAR-10, relative to the repository root.
FOLDER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "cifar10")


def get_config(arg: str | None = None):
  args = set(arg.split(",")) if arg else set()
  unknown = args - {"folder", "runlocal"}
  if unknown:
    raise ValueError(f"Unknown config argument(s) {sorted(unknown)}; known: folder, runlocal.")
  config = default.get_config()
  config.dataset = f"folder:{os.path.normpath(FOLDER)}" if "folder" in args else "cifar10"
  config.train_split = "train[:90%]"
  config.eval_split = "train[90%:]"
  config.image_size = 32
  config.augment = "crop_flip"
  config.model = "resnet20"
  config.model_kwargs = {}
  config.batch_size = 128
  config.eval_batch_size = 500
  config.num_epochs = 182.0  # ~64k steps at batch 128, as in He et al. (2016).
  config.learning_rate = 0.2  # 0.1 at batch 128.
  config.weight_decay = 1e-4
  config.warmup_epochs = 1.0
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 1000
  if "runlocal" in args:
    default.runlocal(config)
    config.model_kwargs = {"width": 4}
    config.eval_split = "train[99%:]"
  return config
