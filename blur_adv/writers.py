"""Where training numbers go: absl log lines and TensorBoard event files, without TensorFlow.

clu's writers import TensorFlow (about 5 s of CPU per process) to write a few scalars. These write
the same event files with tensorboard's own record format and protos (no TensorFlow), through
`etils.epath`, so a `gs://` workdir works like a local one. Only process 0 writes
(`create_writer(..., is_chief=False)` gives a silent writer).

`ProgressReporter` logs steps/s and the ETA every `every_steps` steps (and writes `steps_per_sec`),
with the share of time spent in named parts such as evaluation.
"""
from __future__ import annotations

import contextlib
import socket
import time
from typing import Mapping

from absl import logging
from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.summary.writer import record_writer


class NullWriter:
  """Writes nothing: what non-chief processes get."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    del step, scalars

  def write_hparams(self, hparams: Mapping[str, object]):
    del hparams

  def flush(self):
    pass

  def close(self):
    pass


class Writer(NullWriter):
  """Log lines for every scalar, and TensorBoard events in `logdir` (None: log lines only)."""

  def __init__(self, logdir: str | None):
    self._records = None
    if logdir is not None:
      directory = epath.Path(logdir)
      directory.mkdir(parents=True, exist_ok=True)
      # TensorBoard's file naming: it reads every `events.out.tfevents.*` file of a directory.
      name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.blur_adv"
      self._records = record_writer.RecordWriter((directory / name).open("wb"))
      self._write_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write_event(self, event: event_pb2.Event):
    if self._records is not None:
      self._records.write(event.SerializeToString())

  def _write_summary(self, step: int, summary: summary_pb2.Summary):
    self._write_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    logging.info("[%d] %s", step, ", ".join(f"{k}={v:.6g}" for k, v in scalars.items()))
    self._write_summary(step, summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]))

  def write_hparams(self, hparams: Mapping[str, object]):
    # TensorBoard's hparams plugin takes bool, int, float and str values; others as their repr.
    values = {k: v if isinstance(v, (bool, int, float, str)) else repr(v)
              for k, v in hparams.items()}
    logging.info("Hyperparameters: %s", values)
    self._write_summary(0, hparams_summary.hparams_pb(values))

  def flush(self):
    if self._records is not None:
      self._records.flush()

  def close(self):
    if self._records is not None:
      self._records.close()
      self._records = None


def create_writer(logdir: str | None, is_chief: bool) -> NullWriter:
  return Writer(logdir) if is_chief else NullWriter()


def _format_seconds(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class ProgressReporter:
  """Called with the step after each train step; every `every_steps` steps (and at the last one)
  logs steps/s since the previous report, the ETA and where the time went."""

  def __init__(self, num_train_steps: int, writer: NullWriter, every_steps: int):
    self._total, self._writer, self._every = num_train_steps, writer, max(1, every_steps)
    self._start = self._last_time = time.monotonic()
    self._last_step = None
    self._time_in = {}

  def __call__(self, step: int):
    now = time.monotonic()
    if self._last_step is None:  # The first step (compilation included) starts the clock.
      self._last_step, self._last_time = step, now
      return
    if step % self._every and step != self._total:
      return
    steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
    elapsed = now - self._start
    parts = ", ".join(f"{100 * t / elapsed:.0f}% {name}" for name, t in self._time_in.items())
    logging.info("%.2f steps/s, step %d/%d (%.0f%%), ETA %s, elapsed %s%s", steps_per_sec, step,
                 self._total, 100 * step / self._total,
                 _format_seconds((self._total - step) / max(steps_per_sec, 1e-9)),
                 _format_seconds(elapsed), f" ({parts})" if parts else "")
    self._writer.write_scalars(step, {"steps_per_sec": steps_per_sec})
    self._last_step, self._last_time = step, now

  @contextlib.contextmanager
  def timed(self, name: str):
    """Counts the block's time as `name` (the next steps/s figure leaves it out)."""
    start = time.monotonic()
    try:
      yield
    finally:
      spent = time.monotonic() - start
      self._time_in[name] = self._time_in.get(name, 0.0) + spent
      self._last_time += spent
