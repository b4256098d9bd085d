"""Evaluators by name (`config.evaluators`): the interface (`base`), `clean`, the `robustness`
evaluators and the `plots` they feed."""
from blur_adv import _lazy

__getattr__ = _lazy.module_getattr(__name__, parts=("base", "clean", "robustness", "plots"))
