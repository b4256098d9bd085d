"""Defenses selected by `config.defense`, shared by every trainer.

`config` holds the fields, defaults and checks (no JAX, so configs can import it), `front_end` the
deblurring front-ends and the classifier behind one, `augmentation` blur and noise augmentation
inside train steps, `init` the state before a fresh run's first step (`init_from`, U-Net
pre-training).
"""
from blur_adv import _lazy

__getattr__ = _lazy.module_getattr(
    __name__, parts=("config", "front_end", "augmentation", "init"))
