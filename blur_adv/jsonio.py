"""JSON result files (final_metrics.json, eval.json): read, and written atomically."""
from __future__ import annotations

import json
import os


def read_json(path: str) -> dict:
  """The file's object, or {} when there is no file yet."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def write_json(path: str, payload: dict):
  """Writes through a temporary file and a rename, so a reader never sees half a file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
