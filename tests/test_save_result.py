"""experiments/save_result.py keeps the last checkpoint, the JSON results and the commands."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
import save_result  # pylint: disable=g-import-not-at-top,wrong-import-position


def _touch(path, text="x"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def test_keeps_only_the_last_checkpoint_and_the_results(tmp_path):
  workdir, out = str(tmp_path / "run"), str(tmp_path / "results" / "row")
  for step in ("8", "100", "12"):  # Numeric order, not string order.
    _touch(os.path.join(workdir, "checkpoints", step, "state", "data"), step)
  _touch(os.path.join(workdir, "final_metrics.json"), "{}")
  _touch(os.path.join(out, "checkpoints", "4", "stale"))  # An older save of the row.
  save_result.save(workdir, out, ["python -m blur_adv.main --a", "python -m blur_adv.evaluate --b"])
  assert os.listdir(os.path.join(out, "checkpoints")) == ["100"]
  with open(os.path.join(out, "checkpoints", "100", "state", "data")) as f:
    assert f.read() == "100"
  assert os.path.exists(os.path.join(out, "final_metrics.json"))
  assert not os.path.exists(os.path.join(out, "eval.json"))  # Not made by this run.
  with open(os.path.join(out, "command.sh")) as f:
    assert f.read().splitlines()[1:] == ["python -m blur_adv.main --a",
                                         "python -m blur_adv.evaluate --b"]
