"""blur_adv: differentiable blur kernels, blur measures and blur robustness for JAX classifiers.

  ops/         the blur library: kernels, blur, measures, budget, attacks, corruptions, deblurring
  models/      Flax networks: classifiers, the kernel adversary, the deblurring U-Net
  trainers/    train states and per-device steps (standard, adversarial) and their losses
  defense/     `config.defense`: augmentation, front-ends, fine-tuning, shared by every trainer
  evaluators/  clean and robustness evaluators and their plots
  tools/       command-line tools (fit, demo)
  main, train, evaluate, experiment, data, parallel, checkpoint, optim: the training system

Importing this package imports nothing else. The flat module paths of earlier versions
(`from blur_adv import kernels, blur, metrics`, `import blur_adv.attacks`) still work: they name
the modules below, imported on first use.
"""
import importlib
import importlib.abc
import importlib.util
import sys

from blur_adv import _lazy

# Old module path -> the module it names now.
ALIASES = {
    **{name: f"blur_adv.ops.{name}" for name in (
        "kernels", "family_params", "blur", "blur_strategies", "budget", "augment", "corruptions",
        "deblur", "attacks", "measures", "native")},
    "metrics": "blur_adv.ops.measures",  # Image measures; not `clu.metrics`.
    "adversary": "blur_adv.models.adversary",
    "adversarial_trainer": "blur_adv.trainers.adversarial",
    "robustness": "blur_adv.evaluators.robustness",
    "plots": "blur_adv.evaluators.plots",
}

__getattr__ = _lazy.module_getattr(__name__, aliases=ALIASES)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Makes `import blur_adv.<old name>` give the module of `ALIASES` (one module object)."""

  def find_spec(self, fullname, path=None, target=None):
    del path, target
    package, _, name = fullname.partition(".")
    if package == __name__ and name in ALIASES:
      return importlib.util.spec_from_loader(fullname, self)
    return None

  def create_module(self, spec):
    module = importlib.import_module(ALIASES[spec.name.partition(".")[2]])
    spec.loader_state = module.__spec__  # The import system sets the alias spec; restored below.
    return module

  def exec_module(self, module):
    module.__spec__ = module.__spec__.loader_state


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
  sys.meta_path.append(_AliasFinder())
