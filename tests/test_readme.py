"""README's multi-host section: its commands parse with the entry points' own flags and configs.

A typo in a flag or in a `--config.FIELD=` override of the pod guide fails here, not on a pod.
"""
import os
import re
import shlex

import pytest
from absl import flags

from blur_adv import components  # pylint: disable=unused-import  (registers config sections)
from blur_adv import config_checks, evaluate, main
from conftest import REPO

SECTION = "### Multi-host (TPU pods, GPU clusters)"
ENTRY_POINTS = {"blur_adv.main": main._define_flags,  # pylint: disable=protected-access
                "blur_adv.evaluate": evaluate._define_flags}  # pylint: disable=protected-access
POD = {"num_devices": 32, "process_count": 8}  # e.g. a TPU v4-64 slice: 32 chips on 8 hosts


def _words(text):
  """Shell words, with quoted commands (`--command="..."`) split into theirs too."""
  for word in shlex.split(text):
    if " " in word:
      yield from _words(word.split("=", 1)[-1])
    else:
      yield word


def readme_commands():
  """(entry point, argv) for each `python -m blur_adv.X ...` in the section's code blocks."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  start = text.index(SECTION)
  section = text[start:text.index("\n## ", start)]
  commands = []
  for block in re.findall(r"```\n(.*?)```", section, re.S):
    words = list(_words(block.replace("\\\n", " ")))
    for i in range(len(words) - 2):
      if words[i:i + 2] == ["python", "-m"] and words[i + 2] in ENTRY_POINTS:
        end = next((j for j in range(i + 3, len(words)) if words[j] in ("&&", ";")), len(words))
        commands.append((words[i + 2], words[i + 3:end]))
  return commands


def _parse(entry_point, args, monkeypatch):
  monkeypatch.chdir(REPO)  # Config paths are relative to the repository root, as in README.
  argv = [entry_point] + args
  flag_values = flags.FlagValues()
  ENTRY_POINTS[entry_point](flag_values, argv)
  flag_values(argv)
  return flag_values


def _config_path(args):
  return next(a.split("=", 1)[1].split(":")[0] for a in args if a.startswith("--config="))


def test_the_section_has_the_pod_commands():
  commands = readme_commands()
  assert [name for name, _ in commands] == ["blur_adv.main", "blur_adv.evaluate"]
  train_args = commands[0][1]
  assert "--distributed" in train_args
  assert any(a.startswith("--workdir=gs://") for a in train_args)
  assert any(a.startswith("--config.data_dir=gs://") for a in train_args)


@pytest.mark.parametrize("index", [0, 1])
def test_readme_pod_commands_parse_against_the_config_they_name(index, monkeypatch):
  entry_point, args = readme_commands()[index]
  path = _config_path(args)
  if not os.path.exists(os.path.join(REPO, path)):
    pytest.skip(f"README's pod guide names {path}, which this checkout lacks (it comes with the "
                "ImageNet input pipeline); the same flags are parsed against configs/default.py "
                "by the next test.")
  parsed = _parse(entry_point, args, monkeypatch)
  assert parsed.config.data_dir.startswith("gs://")
  assert parsed.workdir.startswith("gs://")
  config_checks.validate(parsed.config, **POD)


@pytest.mark.parametrize("index", [0, 1])
def test_readme_pod_flags_parse_against_the_default_config(index, monkeypatch):
  """Every override of the README exists in configs/default.py, which every config extends."""
  entry_point, args = readme_commands()[index]
  args = ["--config=configs/default.py" if a.startswith("--config=") else a for a in args]
  parsed = _parse(entry_point, args, monkeypatch)
  assert parsed.config.data_dir == "gs://BUCKET/tfds"
  config_checks.validate(parsed.config, **POD)
  with pytest.raises(AttributeError, match="data_dir"):  # The check can fail: a typo does.
    _parse(entry_point, args + ["--config.data_dirr=x"], monkeypatch)
