"""pmap == shard_map == one device, and 2 processes == 1 process, for the same global batch.

Each case runs in fresh Python processes, since XLA's CPU device count and
`jax.distributed` are fixed at start-up.
"""
import json
import os
import signal
import time

import pytest

from conftest import computed_once, free_port, run_python, start_python

# Trains the runlocal default config (BatchNorm CNN, learned adversary, blur augmentation) for 8
# steps once per parallel mode on 8 simulated devices; prints each run's final_metrics.json and
# its largest parameter difference from the one-device run. Shared by the two tests below.
EQUIVALENCE_SCRIPT = """
import json, sys
import jax, numpy as np
from configs import default
from blur_adv import train

workdir = sys.argv[1]
results, params = {}, {}
for mode, devices in [("shard_map", 1), ("shard_map", 8), ("pmap", 8)]:
  config = default.get_config("runlocal")
  config.num_train_steps = config.eval_every_steps = 8
  config.log_every_steps = 4
  config.parallelism, config.num_devices = mode, devices
  config.defense.augment_probability = 0.5  # Per-example augmentation keys: device-invariant.
  config.defense.noise_probability = 0.5
  name = f"{mode}_{devices}"
  state = train.train_and_evaluate(config, f"{workdir}/{name}")
  results[name] = json.load(open(f"{workdir}/{name}/final_metrics.json"))
  params[name] = state.params
for name in params:
  diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), params["shard_map_1"], params[name])
  results[name]["max_param_diff"] = max(jax.tree.leaves(diffs))
print("RESULTS" + json.dumps(results))
"""

METRICS = ("eval/clean/accuracy", "eval/clean/loss", "train/loss", "train/accuracy",
           "train/grad_norm")


@pytest.fixture
def parallel_runs(tmp_path_factory):
  """final_metrics.json (+ max_param_diff) of the three runs, by '<mode>_<devices>'; trained once
  per session (function-scoped, so that conftest may schedule both slow tests first)."""
  def run():
    workdir = tmp_path_factory.mktemp("parallel")
    result = run_python(["-c", EQUIVALENCE_SCRIPT, str(workdir)], num_devices=8, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULTS")[-1])
  return computed_once("parallel_runs", run)


@pytest.mark.slow
def test_pmap_and_shard_map_on_8_devices_match_one_device(parallel_runs):
  single = parallel_runs["shard_map_1"]
  for name in ("shard_map_8", "pmap_8"):
    assert parallel_runs[name]["max_param_diff"] < 1e-5, name
    for key in METRICS:
      assert parallel_runs[name][key] == pytest.approx(single[key], abs=1e-4), (name, key)


@pytest.mark.slow
def test_every_final_metric_matches_on_8_devices(parallel_runs):
  """Every number in final_metrics.json, not only the usual metrics: ratios such as
  train/loss_gain must be formed from global sums, not averaged over devices."""
  single = parallel_runs["shard_map_1"]
  assert single["step"] == 8
  assert "train/loss_gain" in single  # the ratio metric this test was written for
  # Every number but the run's wall time.
  numbers = {k for k, v in single.items() if isinstance(v, (int, float)) and k != "wall_time_s"}
  assert len(numbers) >= 10, sorted(single)
  for name in ("shard_map_8", "pmap_8"):
    assert set(parallel_runs[name]) == set(single), name
    for key in sorted(numbers):
      assert parallel_runs[name][key] == pytest.approx(single[key], abs=1e-4), (name, key)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  args = ["-m", "blur_adv.main", "--config=configs/default.py:runlocal",
          "--config.defense.augment_probability=0.5"]
  port = free_port()
  procs = [start_python(args + [f"--workdir={tmp_path / 'two'}",
                                f"--coordinator_address=127.0.0.1:{port}",
                                "--num_processes=2", f"--process_id={i}"],
                        log_path=tmp_path / f"process{i}.txt")
           for i in range(2)]
  # The single process splits its CPU into two single-threaded devices (config.cpu_devices).
  one = run_python(args + [f"--workdir={tmp_path / 'one'}", "--config.cpu_devices=2"],
                   timeout=300)
  assert one.returncode == 0, one.stderr[-3000:]
  assert "on 2 device(s)" in one.stderr, one.stderr[-3000:]
  for i, proc in enumerate(procs):
    assert proc.wait(timeout=300) == 0, (tmp_path / f"process{i}.txt").read_text()[-3000:]
  with open(tmp_path / "one" / "final_metrics.json") as f:
    expected = json.load(f)
  with open(tmp_path / "two" / "final_metrics.json") as f:
    got = json.load(f)
  assert got["step"] == expected["step"] == 12
  for key in METRICS:
    assert got[key] == pytest.approx(expected[key], abs=1e-4), key
  # Only process 0 writes TensorBoard events.
  assert "Training 12 steps" not in (tmp_path / "process1.txt").read_text()
  assert [f for f in os.listdir(tmp_path / "two") if f.startswith("events.out")]


@pytest.mark.slow
def test_sigterm_on_one_of_two_processes_saves_at_one_step_on_both(tmp_path):
  """JAX's preemption service: a SIGTERM to process 1 only makes both processes save the same
  step and exit cleanly, with no per-step exchange in the training loop."""
  workdir = tmp_path / "two"
  port = free_port()
  procs = [start_python(["-m", "blur_adv.main", "--config=configs/standard.py:runlocal",
                         "--config.num_train_steps=400", "--config.checkpoint_every_steps=400",
                         "--config.log_every_steps=5", "--config.eval_every_steps=400",
                         f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
                         "--num_processes=2", f"--process_id={i}"],
                        log_path=tmp_path / f"process{i}.txt")
           for i in range(2)]
  log = tmp_path / "process0.txt"
  deadline = time.time() + 240
  while "train/loss=" not in log.read_text():  # Both are training.
    assert time.time() < deadline and all(p.poll() is None for p in procs), log.read_text()[-3000:]
    time.sleep(0.1)
  procs[1].send_signal(signal.SIGTERM)
  for i, proc in enumerate(procs):
    assert proc.wait(timeout=120) == 0, (tmp_path / f"process{i}.txt").read_text()[-3000:]
  with open(workdir / "final_metrics.json") as f:
    summary = json.load(f)
  assert summary["preempted"] and summary["step"] < 400
  saved = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
  assert saved == [summary["step"]]
