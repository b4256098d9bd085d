"""CIFAR-10 with a pre-activation ResNet-18 (accelerator scale; ~18 images/s on 2 CPU cores)."""
from configs import cifar10


def get_config(arg: str | None = None):
  config = cifar10.get_config(arg)
  if "runlocal" not in (arg or ""):
    config.model = "preact_resnet18"
    config.num_epochs = 200.0
    config.weight_decay = 5e-4
  return config
