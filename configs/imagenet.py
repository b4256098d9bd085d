"""ImageNet (ILSVRC-2012) with ResNet-50 at 224 px: default.py's experiment at ImageNet scale.

  tfds build imagenet2012 --file_format=array_record --data_dir=DIR  # once; manual download
  python -m blur_adv.main --config=configs/imagenet.py --workdir=/tmp/in1k \
      --config.data_dir=DIR
  # bfloat16 compute on GPU/TPU (parameters stay float32): --config=configs/imagenet.py:bf16
  # An ImageFolder copy instead of TFDS: --config.dataset=folder:PATH (PATH/train, PATH/validation)
  # Minutes-long smoke run on a small folder: --config=configs/imagenet.py:runlocal \
  #     --config.dataset=folder:PATH

Arguments after ':' are comma separated: `bf16`, `runlocal`. The recipe is the standard one
(Goyal et al., 2017; flax examples/imagenet): batch 1024 with the learning rate scaled linearly
from 0.1 at batch 256, 5 warm-up epochs then cosine decay, ~90 epochs, weight decay 1e-4;
training images are inception-style random-resized crops with flips, evaluation images are
resized to 256 on the shorter side and centre-cropped to 224.
"""
import ml_collections

from configs import default


def get_config(arg: str | None = None):
  args = set(arg.split(",")) if arg else set()
  unknown = args - {"bf16", "runlocal"}
  if unknown:
    raise ValueError(f"Unknown config argument(s) {sorted(unknown)}; known: bf16, runlocal.")
  config = default.get_config()
  config.dataset = "imagenet2012"  # TFDS, read as ArrayRecord with as_data_source().
  config.train_split = "train"
  config.eval_split = "validation"
  config.image_size = 224
  config.augment = "inception_crop_flip"
  config.eval_crop_fraction = 0.875  # 256 -> 224.
  config.data_workers = 16  # Decoding processes per host; about the host's spare cores.

  config.model = "resnet50"
  dtype = "bfloat16" if "bf16" in args else "float32"  # Compute dtype; parameters stay float32.
  config.model_kwargs = ml_collections.ConfigDict({"dtype": dtype})

  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.num_epochs = 90.0
  config.learning_rate = 0.1  # Peak for batch 256: 0.4 at batch 1024.
  config.lr_schedule = "cosine"
  config.warmup_epochs = 5.0
  config.weight_decay = 1e-4
  config.momentum = 0.9
  config.label_smoothing = 0.0

  config.log_every_steps = 100
  config.eval_every_steps = 5000  # About every 4 epochs (1251 steps each).
  config.checkpoint_every_steps = 1000
  if "runlocal" in args:
    default.runlocal(config)
    config.dataset = "folder:/tmp/imagenet_like"  # Override with the folder to train on.
    config.image_size = 64
    config.model_kwargs = ml_collections.ConfigDict(
        {"width": 4, "dtype": dtype})
    config.data_workers = 0
    config.eval_batch_size = 32
  return config
