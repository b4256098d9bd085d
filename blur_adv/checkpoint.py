"""Orbax checkpoints of everything needed to resume exactly: state, RNG, data position.

Saves are atomic (Orbax writes to a temporary directory and renames it), so a
run killed at any moment restarts from the newest complete checkpoint.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import flax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath


class Restored(NamedTuple):
  state: Any  # Host (numpy) train state.
  rng: np.ndarray  # Base training RNG key.
  data_position: int  # Index of the next global training batch.


class Checkpointer:
  """Periodic/final saves with keep-N; `restore_latest` resumes where the last save left off."""

  def __init__(self, directory: epath.PathLike, max_to_keep: int = 3):
    """`directory`: absolute, local or `gs://` (see `paths.resolve`)."""
    self._manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, host_state: Any, rng: Any, data_position: int):
    """Starts an asynchronous save of a host (numpy) state; call `wait` before exiting."""
    tree = {"train_state": flax.serialization.to_state_dict(host_state),
            "rng": np.asarray(rng)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree),
        data=ocp.args.JsonSave({"position": int(data_position)})), force=True)

  def restore_latest(self, template_state: Any, template_rng: Any) -> Restored | None:
    """Restores the newest checkpoint into the structure of the templates, or None."""
    step = self._manager.latest_step()
    if step is None:
      return None
    template = {"train_state": flax.serialization.to_state_dict(template_state),
                "rng": np.asarray(template_rng)}
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(template), data=ocp.args.JsonRestore()))
    state = flax.serialization.from_state_dict(template_state,
                                               restored["state"]["train_state"])
    return Restored(state, np.asarray(restored["state"]["rng"]),
                    int(restored["data"]["position"]))

  def restore_latest_raw(self) -> dict | None:
    """The newest checkpoint's state tree as saved (nested dicts of arrays), or None.

    For reading another run's checkpoint whose train state has a different structure (e.g. a
    classifier trained by another trainer, to fine-tune from).
    """
    step = self._manager.latest_step()
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
    return restored["state"]

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
