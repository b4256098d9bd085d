"""The default experiment without the adversary: standard training, for comparison.

  python -m blur_adv.main --config=configs/standard.py --workdir=/tmp/digits_standard
"""
from configs import default


def get_config(arg=None):
  config = default.get_config(arg)
  config.trainer = "standard"
  return config
