"""Trainers by name (`config.trainer`): the shared interface and state (`base`), the `standard`
and `adversarial` trainers, and their `losses`."""
from blur_adv import _lazy

__getattr__ = _lazy.module_getattr(__name__, parts=("base", "losses", "standard", "adversarial"))
