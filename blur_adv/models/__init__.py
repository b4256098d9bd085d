"""Flax networks: the classifiers by name (`classifiers`), the kernel adversary (`adversary`) and
the deblurring U-Net (`unet`), and the fast CIFAR classifier (`whitened_net`)."""
from blur_adv import _lazy

__getattr__ = _lazy.module_getattr(__name__, parts=("classifiers", "whitened_net", "adversary", "unet"))
