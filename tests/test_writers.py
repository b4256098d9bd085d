"""blur_adv/writers.py's progress reports: when they fire and what they leave out (the event files
themselves are read back by TensorFlow in test_train.py and written to a bucket in test_paths.py)."""
from blur_adv import writers


class RecordingWriter(writers.NullWriter):

  def __init__(self):
    self.scalars = []

  def write_scalars(self, step, scalars):
    self.scalars.append((step, dict(scalars)))


def test_progress_reports_every_n_steps_and_at_the_last_one(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(writers.time, "monotonic", lambda: now[0])
  writer = RecordingWriter()
  progress = writers.ProgressReporter(num_train_steps=12, writer=writer, every_steps=5)
  for step in range(1, 13):
    now[0] += 30.0 if step == 1 else 2.0  # Step 1 compiles; then 2 s per step.
    if step == 7:
      with progress.timed("eval"):
        now[0] += 100.0  # Left out of steps/s.
    progress(step)
  assert [step for step, _ in writer.scalars] == [5, 10, 12]
  assert [s["steps_per_sec"] for _, s in writer.scalars] == [0.5, 0.5, 0.5]
