"""experiments/sweep.py: every run of every sweep is a valid config, and every sweep runs end to end
(train, evaluate, collect, plot) on the default config with tiny settings."""

import csv
import importlib.util
import json
import os

import pytest
from etils import epath

from blur_adv import config_checks, experiment  # pylint: disable=unused-import  (registrations)
from conftest import REPO, run_python

_spec = importlib.util.spec_from_file_location("sweep", os.path.join(REPO, "experiments",
                                                                     "sweep.py"))
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)

# Seconds-long runs: 2 steps, 8 examples, one family and budget, one attack step.
TINY = ("num_train_steps=2", "eval_split=test[:32]", "checkpoint_every_steps=2",
        "log_every_steps=2", "eval_every_steps=2", "robustness.num_examples=8",
        "robustness.families=('gaussian',)", "robustness.budgets=(0.1,)",
        "robustness.attack_steps=1", "robustness.flip_search_steps=1",
        "robustness.num_saved_examples=4", "defense.unet_pretrain_steps=2",
        "defense.unet_pretrain_examples=32")


def _run_sweep(name, out, launch="inline", only=None, evaluators=None):
  args = ["experiments/sweep.py", f"--sweep={name}", "--config=configs/default.py:runlocal",
          f"--out={out}", f"--launch={launch}"] + [f"--override={o}" for o in TINY]
  if only:
    args.append(f"--only={only}")
  if evaluators:
    args.append(f"--evaluators={evaluators}")
  return run_python(args, timeout=900)


@pytest.mark.parametrize("name", sorted(sweep.SWEEPS))
def test_every_run_of_every_sweep_is_a_valid_config(name):
  for _, overrides in sweep.SWEEPS[name]:
    config = sweep.load_config("configs/default.py:runlocal", overrides, TINY)
    config_checks.validate(config)
    for field, value in overrides.items():
      node = config
      for part in field.split("."):
        node = node[part]
      assert node == value


def _read_rows(out):
  with open(os.path.join(out, "results.csv")) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_defense_sweep_runs_every_defense_end_to_end(tmp_path):
  result = _run_sweep("defense", tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _read_rows(tmp_path)
  assert [r["run"] for r in rows] == [name for name, _ in sweep.SWEEPS["defense"]]
  for row in rows:
    for column in ("clean/accuracy", "corruptions/mean_accuracy", "worst_case/0.1/all",
                   "minimal_flip/curve_area", "wall_time_s"):
      assert 0 <= float(row[column]) <= (1e6 if column == "wall_time_s" else 1), (row["run"], column)
  with open(os.path.join(tmp_path, "results.md")) as f:
    table = f.read()
  assert table.count("\n") == 2 + len(rows) and "| deblur_unet |" in table
  assert os.path.exists(os.path.join(tmp_path, "worst_case_0.1_all.png"))
  # Finished runs are skipped (nothing is trained again) and the results re-collected.
  again = _run_sweep("defense", tmp_path)
  assert again.returncode == 0 and "+ inline" not in again.stdout and "| consistency |" in again.stdout
  # An evaluation killed part-way resumes with only the evaluators its eval.json lacks, and an
  # evaluator recorded with another attack than the config's runs again.
  def edit(run, change):
    path = tmp_path / run / "eval.json"
    results = json.loads(path.read_text())
    change(results)
    path.write_text(json.dumps(results))
    return results
  def stale_attack_and_placeholder(results):
    results["worst_case"]["attack_steps"] = 99
    results["minimal_flip"]["median"] = -1.0  # Would be overwritten if re-run.
  stale = edit("standard", stale_attack_and_placeholder)
  killed = edit("augmentation", lambda r: r.pop("corruptions"))
  resumed = _run_sweep("defense", tmp_path)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert resumed.stdout.count("+ inline") == 2, resumed.stdout
  standard = json.loads((tmp_path / "standard" / "eval.json").read_text())
  assert standard["worst_case"]["attack_steps"] == 1  # TINY's attack, re-run.
  assert {k: v for k, v in standard["worst_case"].items() if k != "attack_steps"} == (
      pytest.approx({k: v for k, v in stale["worst_case"].items() if k != "attack_steps"}))
  assert standard["minimal_flip"]["median"] == -1.0
  augmentation = json.loads((tmp_path / "augmentation" / "eval.json").read_text())
  assert "corruptions" in augmentation
  assert {k: augmentation[k] for k in killed} == killed


@pytest.mark.slow
@pytest.mark.parametrize("name, launch", [("budget", "inline"), ("family", "inline"),
                                          ("adversary", "local"), ("inner_steps", "inline")])
def test_other_sweeps_run_end_to_end(name, launch, tmp_path):
  """One setting each (their runs differ only in override values, all checked above); one goes
  through the subprocess launcher, whose flags must parse a string override (its run's trainer)
  and a tuple one (`--config.evaluators`). Only the evaluators the test reads (the defense sweep
  above runs all four)."""
  first = sweep.SWEEPS[name][0][0]
  result = _run_sweep(name, tmp_path, launch=launch, only=first, evaluators="clean,worst_case")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = _read_rows(tmp_path)
  assert [r["run"] for r in rows] == [first]
  assert 0 <= float(rows[0]["worst_case/0.1/all"]) <= 1
  assert not any(k.startswith(("corruptions/", "minimal_flip/")) for k in rows[0])  # --evaluators
  with open(os.path.join(tmp_path, first, "command.sh")) as f:  # How the run was made.
    assert f.read().count(f"--workdir={tmp_path / first}") == 2
  printed = _run_sweep(name, tmp_path / "print", launch="print")
  lines = printed.stdout.strip().splitlines()
  assert len(lines) == len(sweep.SWEEPS[name]) and all("blur_adv.evaluate" in l for l in lines)


def test_command_sh_keeps_its_notes_and_lists_each_command_once(tmp_path):
  workdir = epath.Path(tmp_path)
  (workdir / "command.sh").write_text("# Trained elsewhere: see its note.\n")
  commands = [["/any/python", "-m", "blur_adv.main", "--seed=1"],
              ["/any/python", "-m", "blur_adv.evaluate", "--seed=1"]]
  sweep._write_commands(workdir, commands)
  sweep._write_commands(workdir, commands)  # A resumed sweep writes them again.
  assert (workdir / "command.sh").read_text() == (
      "# Trained elsewhere: see its note.\n"
      "python -m blur_adv.main --seed=1\npython -m blur_adv.evaluate --seed=1\n")


def test_results_table_shows_bootstrap_intervals(tmp_path):
  rows = [{"run": "a", "clean/accuracy": 0.86, "clean/accuracy/ci95_lo": 0.84,
           "clean/accuracy/ci95_hi": 0.88, "worst_case/0.1/all": 0.5}]
  table = sweep.write_results(str(tmp_path), rows)
  assert "| a | 0.86 [0.84, 0.88] | - | - | 0.5 | - | - |" in table
