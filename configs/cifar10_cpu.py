"""CIFAR-10 sized for a 2-core CPU: ResNet-20, 2 epochs, each model well under 45 minutes.

The defense comparison of the README runs this config through `experiments/sweep.py`:

  python experiments/sweep.py --sweep=defense --config=configs/cifar10_cpu.py --out=sweeps/cifar10

It reads the shared ImageFolder copy (`configs/cifar10.py:folder`), carves 5k validation
examples from train, and evaluates robustness on the first `robustness.num_examples` of them.
`configs/cifar10.py` has the full schedule for a GPU/TPU.
"""
from configs import cifar10


def get_config(arg: str | None = None):
  config = cifar10.get_config("folder" + ("," + arg if arg else ""))
  config.num_epochs = 2.0
  config.warmup_epochs = 0.3
  config.eval_every_steps = 10_000  # Only at the end.
  config.checkpoint_every_steps = 250
  config.robustness.num_examples = 200
  config.robustness.budgets = (0.05, 0.1)
  config.robustness.attack_steps = 5
  config.robustness.flip_search_steps = 3
  return config
