"""Training system end to end: runs, configs failing fast, NaN, preemption, resumption."""
import json
import os
import signal
import time

import jax.numpy as jnp
import numpy as np
import pytest

from blur_adv import config_checks, evaluate, train, trainers
from conftest import run_python, start_python


def read_json(path):
  with open(path) as f:
    return json.load(f)


def _tensorboard_scalars(logdir):
  """{tag: {step: value}} of every event file in `logdir` (tags without a value map to {})."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  scalars = {}
  for name in os.listdir(logdir):
    if name.startswith("events.out.tfevents"):
      for event in tf.compat.v1.train.summary_iterator(str(logdir / name)):
        for value in event.summary.value:
          steps = scalars.setdefault(value.tag, {})
          if value.HasField("simple_value"):
            steps[event.step] = value.simple_value
  return scalars


def test_digits_end_to_end_then_evaluate(tiny_config, tmp_path):
  state = train.train_and_evaluate(tiny_config, str(tmp_path))
  assert int(state.step) == tiny_config.num_train_steps
  final = read_json(tmp_path / "final_metrics.json")
  assert final["step"] == 12 and 0 <= final["eval/clean/accuracy"] <= 1
  assert final["eval/clean/accuracy"] > 0.2  # Chance is 0.1; 12 small steps already learn.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["12", "4", "8"]
  # TensorBoard events, read back by TensorFlow's own reader (which checks every record's CRC).
  scalars = _tensorboard_scalars(tmp_path)
  assert scalars["eval/clean/accuracy"][12] == pytest.approx(final["eval/clean/accuracy"])
  assert scalars["train/loss"][12] == pytest.approx(final["train/loss"])
  assert sorted(scalars["train/loss"]) == list(range(4, 13, 4))  # log_every_steps=4
  assert "steps_per_sec" in scalars and "_hparams_/session_start_info" in scalars

  results = evaluate.evaluate_checkpoint(tiny_config, str(tmp_path))
  assert read_json(tmp_path / "eval.json") == results
  assert results["step"] == 12
  assert results["clean"]["accuracy"] == pytest.approx(final["eval/clean/accuracy"], abs=1e-6)

  # Relaunching the finished run re-evaluates but keeps the training run's time and metrics.
  train.train_and_evaluate(tiny_config, str(tmp_path))
  again = read_json(tmp_path / "final_metrics.json")
  assert again["wall_time_s"] == final["wall_time_s"] and again["train/loss"] == final["train/loss"]
  assert again["eval/clean/accuracy"] == pytest.approx(final["eval/clean/accuracy"], abs=1e-6)


def test_tfds_mock_data_end_to_end(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from configs import cifar10  # pylint: disable=g-import-not-at-top
  config = cifar10.get_config("runlocal")
  config.model, config.model_kwargs = "small_cnn", {"width": 4}
  config.train_split, config.eval_split = "train", "test"
  config.num_train_steps = 3
  with tfds.testing.mock_data(num_examples=64):
    state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 3
  assert np.isfinite(read_json(tmp_path / "final_metrics.json")["eval/clean/loss"])


@pytest.mark.parametrize("field,value,message", [
    ("modle", "resnet20", "Unknown config field config.modle .did you mean config.model"),
    ("model", "resnet21", "config.model='resnet21': unknown model"),
    ("trainer", "adversary", "config.trainer='adversary'"),
    ("budget", 0.0, "config.budget=0.0: the SSIM budget"),
    ("budget", 1.5, "config.budget=1.5"),
    ("data_workers", -1, "config.data_workers=-1"),
    ("eval_crop_fraction", 1.2, "config.eval_crop_fraction=1.2"),
    ("augment", "inception", "config.augment='inception'"),
    ("parallelism", "pjit", "config.parallelism='pjit'"),
    ("train_split", "train[::2]", "config.train_split"),
    ("batch_size", 0, "config.batch_size=0"),
    ("robustness.flip_attack_steps", 0, "config.robustness.flip_attack_steps=0"),
])
def test_bad_config_fields_are_named(tiny_config, field, value, message):
  tiny_config.update_from_flattened_dict({field: value})
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.validate(tiny_config)


def test_batch_size_must_divide_over_devices(tiny_config):
  tiny_config.batch_size = 30
  with pytest.raises(config_checks.ConfigError, match="config.batch_size=30.*8 devices"):
    config_checks.validate(tiny_config, num_devices=8)


def test_unknown_dataset_fails_fast(tiny_config, tmp_path):
  tiny_config.dataset = "no_such_dataset"
  start = time.time()
  with pytest.raises(ValueError, match="config.dataset='no_such_dataset'"):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  assert time.time() - start < 10


@pytest.mark.parametrize("override,message", [
    ("--config.modle=resnet20", "modle"),
    ("--config.budget=2.0", "config.budget=2.0"),
    ("--config.batch_size=30", "config.batch_size=30: must be divisible by the 8 devices"),
    ("--config.dataset=folder:/nonexistent", "folder:/nonexistent"),
    ("--config.cpu_devices=-1", "config.cpu_devices=-1: must be an integer >= 0"),
])
def test_cli_fails_in_seconds_naming_the_field(tmp_path, override, message):
  start = time.time()
  result = run_python(["-m", "blur_adv.main", "--config=configs/default.py:runlocal",
                       f"--workdir={tmp_path}", override], num_devices=8, timeout=60)
  assert result.returncode != 0
  assert message in result.stderr + result.stdout
  assert time.time() - start < 20  # Includes starting Python and importing JAX.


@trainers.TRAINERS.register("test_nan_at_step_3")
def _nan_at_step_3(config, *args):
  """The standard trainer, with the loss poisoned from the third step on."""
  base = trainers.standard_trainer(config, *args)

  def train_step(state, batch, rng):
    poison = jnp.where(state.step >= 2, jnp.nan, 1.0)
    batch = dict(batch, image=batch["image"] * poison)
    return base.train_step(state, batch, rng)

  return trainers.Trainer(base.init_state, train_step, base.eval_step)


def test_nan_loss_stops_at_its_step_without_checkpointing_it(tiny_config, tmp_path):
  tiny_config.trainer = "test_nan_at_step_3"
  tiny_config.checkpoint_every_steps = 2
  with pytest.raises(train.NonFiniteLossError, match="loss=nan at step 3"):
    train.train_and_evaluate(tiny_config, str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints") == ["2"]


def _wait_for_checkpoint(workdir, process, timeout=300):
  """Blocks until a finished checkpoint exists; returns its steps."""
  ckpt_dir = os.path.join(workdir, "checkpoints")
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert process.poll() is None, "training ended before a checkpoint was seen"
    steps = [d for d in os.listdir(ckpt_dir)] if os.path.isdir(ckpt_dir) else []
    if any(s.isdigit() for s in steps):
      return steps
    time.sleep(0.05)
  raise TimeoutError("no checkpoint written")


LONG_RUN = ["--config=configs/default.py:runlocal", "--config.num_train_steps=150",
            "--config.checkpoint_every_steps=25", "--config.log_every_steps=25",
            "--config.eval_every_steps=150"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
  proc = start_python(["-m", "blur_adv.main", f"--workdir={tmp_path}"] + LONG_RUN,
                      log_path=tmp_path / "log.txt")
  _wait_for_checkpoint(str(tmp_path), proc)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=60) == 0
  summary = read_json(tmp_path / "final_metrics.json")
  assert summary["preempted"] and summary["step"] < 150
  # The SIGTERM save is at the step reached, generally not a periodic one.
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert saved[-1] == summary["step"]


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
  main = ["-m", "blur_adv.main"]
  reference = start_python(main + [f"--workdir={tmp_path / 'ref'}"] + LONG_RUN,
                           log_path=tmp_path / "ref.txt")
  workdir = tmp_path / "killed"
  proc = start_python(main + [f"--workdir={workdir}"] + LONG_RUN, log_path=tmp_path / "killed.txt")
  _wait_for_checkpoint(str(workdir), proc)
  proc.kill()  # SIGKILL: no handler runs, possibly mid-save.
  proc.wait()
  assert not os.path.exists(workdir / "final_metrics.json")
  resumed = run_python(main + [f"--workdir={workdir}"] + LONG_RUN)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "Resumed from step" in resumed.stderr
  assert reference.wait(timeout=300) == 0, (tmp_path / "ref.txt").read_text()[-2000:]
  # keep_checkpoints=3 of the 6 periodic saves, the final one included.
  assert sorted(os.listdir(tmp_path / "ref" / "checkpoints"), key=int) == ["100", "125", "150"]
  expected = read_json(tmp_path / "ref" / "final_metrics.json")
  got = read_json(workdir / "final_metrics.json")
  for key in ("step", "eval/clean/accuracy", "eval/clean/loss", "train/loss", "train/accuracy"):
    assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-6), key


def test_modules_can_register_their_own_config_fields(tiny_config):
  tiny_config.test_only_extra = {"kind": "x"}
  with pytest.raises(config_checks.ConfigError, match="config.test_only_extra"):
    config_checks.validate(tiny_config)
  config_checks.register_fields("test_only_extra")
  config_checks.validate(tiny_config)


_MAIN_WITH_OFFLINE_TFDS = """
import sys, time
import tensorflow_datasets as tfds
# Stand-in for TFDS's minutes of download retries, without sending anything anywhere.
tfds.core.DatasetBuilder.download_and_prepare = lambda *a, **k: time.sleep(600)
from absl import app
from blur_adv import main
main._define_flags()
app.run(main.main, argv=["main"] + sys.argv[1:], flags_parser=main._parse_flags)
"""


def test_unprepared_tfds_dataset_exits_in_seconds_with_one_line(tmp_path):
  start = time.time()
  result = run_python(["-c", _MAIN_WITH_OFFLINE_TFDS, "--config=configs/default.py:runlocal",
                       f"--workdir={tmp_path}/run", "--config.dataset=cifar10",
                       f"--config.data_dir={tmp_path}/tfds"], timeout=60)
  elapsed = time.time() - start
  errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
  assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
  assert "tfds build cifar10" in errors[0]
  assert elapsed < 20  # ~5 s waiting for TFDS plus starting Python and importing JAX and TF.


def test_imagenet_runlocal_trains_on_a_generated_folder_and_names_a_corrupt_file(tmp_path):
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  from test_data import make_jpeg_folder  # pylint: disable=g-import-not-at-top
  root = make_jpeg_folder(tmp_path / "in", classes=4)
  config = imagenet.get_config("runlocal")
  config.dataset = f"folder:{root}"
  config.trainer = "standard"
  config.model_kwargs.stage_sizes = (1, 1, 1, 1)  # One bottleneck per stage: compiles faster.
  config.batch_size, config.eval_batch_size, config.num_train_steps = 8, 8, 2
  state = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert int(state.step) == 2
  final = read_json(tmp_path / "run" / "final_metrics.json")
  assert np.isfinite(final["train/loss"]) and 0 <= final["eval/clean/accuracy"] <= 1

  bad = os.path.join(root, "train", "n00000002", "1.jpg")
  with open(bad, "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not a JPEG")
  result = run_python(["-m", "blur_adv.main", "--config=configs/imagenet.py:runlocal",
                       f"--workdir={tmp_path}/run2", f"--config.dataset=folder:{root}",
                       "--config.batch_size=8", "--config.num_train_steps=2"], timeout=120)
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
  assert errors == [errors[0]] and f"Cannot decode image file {bad}" in errors[0]


def test_imagenet_configs_are_valid_and_bf16_changes_only_the_compute_dtype(tmp_path):
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  full, bf16 = imagenet.get_config(), imagenet.get_config("bf16")
  local = imagenet.get_config("runlocal,bf16")
  local.dataset = f"folder:{tmp_path}"  # runlocal trains on a folder the user points it to.
  for config in (full, bf16, local):
    config_checks.validate(config, num_devices=8)
  assert (full.dataset, full.model, full.image_size, full.batch_size) == (
      "imagenet2012", "resnet50", 224, 1024)
  assert bf16.model_kwargs.dtype == "bfloat16" and full.model_kwargs.dtype == "float32"
  bf16.model_kwargs.dtype = "float32"
  assert bf16.to_dict() == full.to_dict()
  with pytest.raises(ValueError, match="Unknown config argument"):
    imagenet.get_config("bf32")
