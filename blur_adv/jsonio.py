"""JSON result files (final_metrics.json, eval.json) under a workdir, local or `gs://`.

Paths go through `etils.epath`, like Orbax's checkpoints and TFDS, so a bucket workdir works.
A reader never sees half a file: a local file is written to a temporary name and renamed over
(`os.replace`, atomic on POSIX); an object store (`gs://`, `s3://`) publishes an object only
once its upload completes, so it is written in place (a rename there is a copy and a delete,
no more atomic than the single write).
"""
from __future__ import annotations

import json

from etils import epath

from blur_adv import paths


def read_json(path: epath.PathLike) -> dict:
  """The file's object, or {} when there is no file yet."""
  path = epath.Path(path)
  if not path.exists():
    return {}
  return json.loads(path.read_text())


def write_json(path: epath.PathLike, payload: dict):
  """Writes `payload` so that a reader sees the old file or the new one, never half of one."""
  path = epath.Path(path)
  text = json.dumps(payload, indent=2, sort_keys=True)
  if paths.is_object_store(path):
    path.write_text(text)
    return
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)
