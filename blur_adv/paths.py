"""Workdir paths, local or in a bucket (`gs://`), through `etils.epath`.

Orbax, TFDS and TensorBoard's writer already take `gs://` paths; everything else a run reads or
writes under its workdir (JSON results, plots, saved examples, another run's checkpoints) goes
through `resolve` and `epath.Path` methods so that a bucket workdir works the same as a local one.
"""
from __future__ import annotations

import os

from etils import epath


def is_object_store(path: epath.PathLike) -> bool:
  """True for `scheme://...` paths (gs://, s3://): no atomic rename, atomic whole-object writes."""
  return "://" in os.fspath(path)


def resolve(path: epath.PathLike) -> epath.Path:
  """`path` as an absolute `epath.Path`: local paths made absolute (Orbax needs that), bucket
  paths kept as they are (epath's own `resolve` would prefix them with the current directory)."""
  if is_object_store(path):
    return epath.Path(path)
  return epath.Path(os.path.abspath(os.fspath(path)))
