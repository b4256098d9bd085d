"""Evaluators by name (`config.evaluators`): the interface (`base`), `clean`, the `robustness`
evaluators and the `plots` they feed, `convergence` (is the worst-case attack strong enough?)
and the `bootstrap` intervals of their numbers."""
from blur_adv import _lazy

__getattr__ = _lazy.module_getattr(__name__, parts=("base", "bootstrap", "clean", "convergence", "robustness", "plots"))
