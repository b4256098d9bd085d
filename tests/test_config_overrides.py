"""Every optional config field can be set from the command line (an unopenable dataset ending the
process at once is tested in test_train.py)."""
import importlib
import os
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, ROOT)
# Every config file and argument README shows.
CONFIGS = ["default.py", "default.py:runlocal", "standard.py", "cifar10.py", "cifar10.py:folder",
           "cifar10_cpu.py", "cifar10_fast.py", "cifar10_fast.py:gpu", "cifar10_preact18.py"]
# A value of each placeholder type, for the overrides.
VALUES = {str: "x", int: 3, float: 0.5, bool: True}


def _load(spec):
  path, _, arg = spec.partition(":")
  module = importlib.import_module("configs." + path[:-len(".py")])
  return module.get_config(arg or None)


def _optional_fields(config, prefix=""):
  """(path, type) of every field whose value is None: each must be a typed placeholder."""
  for key in config.keys():
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      yield from _optional_fields(value, f"{prefix}{key}.")
    elif value is None:
      try:
        field_type = config.get_ref(key).get_type()
      except ValueError:  # ml_collections refuses references to a bare None.
        field_type = type(None)
      yield f"{prefix}{key}", field_type


@pytest.mark.parametrize("spec", CONFIGS)
def test_every_optional_field_is_a_placeholder_set_by_flag(spec):
  fields = list(_optional_fields(_load(spec)))
  assert fields, "every config has optional fields (data_dir, num_train_steps, ...)"
  for path, field_type in fields:
    assert field_type in VALUES, f"config.{path} is None, not a typed placeholder"
    flag_values = flags.FlagValues()
    config_path, _, arg = spec.partition(":")
    file_spec = os.path.join(ROOT, "configs", config_path) + (f":{arg}" if arg else "")
    value = VALUES[field_type]
    argv = ["prog", f"--config={file_spec}", f"--config.{path}={value}"]
    # The overrides are read from `sys_argv` (sys.argv by default), as absl's app would.
    config_flags.DEFINE_config_file("config", None, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    overridden = flag_values.config
    for part in path.split("."):
      overridden = overridden[part]
    assert overridden == value, path
