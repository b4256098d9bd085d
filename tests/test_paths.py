"""Workdir files go through etils.epath: a `gs://` workdir works like a local one.

No bucket is reachable here, so `gs://bucket/...` is redirected to a local directory with
`epath.testing.mock_epath`: anything that bypassed epath (`open`, `os.path`, `shutil`) would miss
the redirect and fail to find or leave its file.
"""
import json
import os

import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing

from blur_adv import jsonio, paths

ROOT = "gs://bucket"
FUNCTIONS = ("copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove",
             "rename", "replace", "rmtree", "stat", "walk")


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """Redirects gs://bucket/... to tmp_path/bucket/...; yields the list of backend calls."""
  calls = []
  # epath sends gs:// to TensorFlow's GCS client whenever TF is importable, ahead of the mocked
  # backends; without TF it uses the (mocked) table.
  monkeypatch.setattr(epath.gpath, "_is_tf_installed", lambda: False)

  def local(value):
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if text is not None and text.startswith(ROOT):
      return str(tmp_path / "bucket") + text[len(ROOT):]
    return value

  def redirect(name):
    def call(original, *args, **kwargs):
      calls.append((name, os.fspath(args[0])))
      args = [local(a) for a in args]
      if name == "open" and "w" in args[1]:  # A bucket has no directories to create first.
        os.makedirs(os.path.dirname(args[0]), exist_ok=True)
      return original(*args, **kwargs)
    return call

  (tmp_path / "bucket").mkdir()
  with epath_testing.mock_epath(**{name: redirect(name) for name in FUNCTIONS}):
    yield calls


def test_resolve_keeps_bucket_paths_and_makes_local_ones_absolute(tmp_path, monkeypatch):
  assert os.fspath(paths.resolve("gs://b/runs/x")) == "gs://b/runs/x"
  monkeypatch.chdir(tmp_path)
  assert os.fspath(paths.resolve("runs/x")) == str(tmp_path / "runs" / "x")
  assert paths.is_object_store("gs://b/x") and not paths.is_object_store(tmp_path)


def test_json_in_a_bucket_is_written_in_place_and_locally_through_a_rename(bucket, tmp_path):
  jsonio.write_json(f"{ROOT}/run/eval.json", {"step": 3})
  assert json.loads((tmp_path / "bucket" / "run" / "eval.json").read_text()) == {"step": 3}
  assert jsonio.read_json(f"{ROOT}/run/eval.json") == {"step": 3}
  assert jsonio.read_json(f"{ROOT}/run/missing.json") == {}
  assert not [c for c in bucket if c[0] in ("rename", "replace")]  # A copy on GCS, not atomic.
  local = tmp_path / "local" / "eval.json"
  local.parent.mkdir()
  jsonio.write_json(local, {"step": 4})
  assert ("replace", str(local) + ".tmp") in bucket  # os.replace: atomic on POSIX.
  assert os.listdir(local.parent) == ["eval.json"] and jsonio.read_json(local) == {"step": 4}


def test_plots_and_saved_rows_read_and_write_a_bucket_workdir(bucket, tmp_path):
  from blur_adv.evaluators import plots  # pylint: disable=g-import-not-at-top  (matplotlib)
  from experiments import save_result  # pylint: disable=g-import-not-at-top
  workdir = epath.Path(f"{ROOT}/run")
  (workdir / "checkpoints" / "7" / "state").mkdir(parents=True)
  (workdir / "checkpoints" / "7" / "state" / "data").write_bytes(b"weights")
  results = {"corruptions": {"gaussian_blur/1": 0.5, "gaussian_blur/2": 0.25,
                             "clean_accuracy": 0.75}}
  jsonio.write_json(workdir / "eval.json", results)
  gallery = dict(clean=np.zeros((2, 8, 8, 3)), adversarial=np.ones((2, 8, 8, 3)),
                 kernels=np.ones((2, 3, 3)) / 9, labels=np.arange(2), predictions=np.arange(2),
                 ssim=np.ones(2), family=np.array(["gaussian"] * 2))
  written = plots.write_all(results, gallery, workdir)
  local = tmp_path / "bucket" / "run"
  assert sorted(epath.Path(p).name for p in written) == [
      "accuracy_vs_severity.png", "kernel_gallery.png"]
  assert (local / "kernel_gallery.png").read_bytes()[:4] == b"\x89PNG"

  save_result.save(workdir, f"{ROOT}/rows/r", ["python -m blur_adv.main ..."])
  row = tmp_path / "bucket" / "rows" / "r"
  assert (row / "checkpoints" / "7" / "state" / "data").read_bytes() == b"weights"
  assert json.loads((row / "eval.json").read_text()) == results
  assert (row / "command.sh").read_text().splitlines()[1] == "python -m blur_adv.main ..."


def test_tensorboard_events_go_through_epath_and_only_from_the_chief(bucket, tmp_path):
  from blur_adv import writers  # pylint: disable=g-import-not-at-top
  silent = writers.create_writer(f"{ROOT}/run", is_chief=False)
  silent.write_scalars(1, {"train/loss": 0.5})
  silent.close()
  assert not (tmp_path / "bucket" / "run").exists()
  writer = writers.create_writer(f"{ROOT}/run", is_chief=True)
  writer.write_scalars(3, {"train/loss": 0.5})
  writer.close()
  files = os.listdir(tmp_path / "bucket" / "run")
  assert len(files) == 1 and files[0].startswith("events.out.tfevents.")
  assert (tmp_path / "bucket" / "run" / files[0]).stat().st_size > 0
