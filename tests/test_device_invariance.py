"""Every number in final_metrics.json is the same on 1 and on 8 devices (adversarial trainer).

Runs in a fresh Python process: XLA's CPU device count is fixed when JAX starts.
"""
import json

import pytest

from conftest import run_python

# 8 adversarial steps of the runlocal default config (BatchNorm CNN, learned adversary), once
# per parallel mode; prints each run's final_metrics.json.
SCRIPT = """
import json, sys
from configs import default
from blur_adv import train

workdir = sys.argv[1]
results = {}
for mode, devices in [("shard_map", 1), ("shard_map", 8), ("pmap", 8)]:
  config = default.get_config("runlocal")
  config.num_train_steps = config.eval_every_steps = 8
  config.log_every_steps = 4
  config.parallelism, config.num_devices = mode, devices
  name = f"{mode}_{devices}"
  train.train_and_evaluate(config, f"{workdir}/{name}")
  results[name] = json.load(open(f"{workdir}/{name}/final_metrics.json"))
print("RESULTS" + json.dumps(results))
"""


def test_every_final_metric_matches_on_8_devices(tmp_path):
  result = run_python(["-c", SCRIPT, str(tmp_path)], num_devices=8, timeout=400)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(result.stdout.split("RESULTS")[-1])
  single = results["shard_map_1"]
  assert single["step"] == 8
  assert "train/loss_gain" in single  # the ratio metric this test was written for
  # Every number but the run's wall time.
  numbers = {k for k, v in single.items() if isinstance(v, (int, float)) and k != "wall_time_s"}
  assert len(numbers) >= 10, sorted(single)
  for name in ("shard_map_8", "pmap_8"):
    assert set(results[name]) == set(single), name
    for key in sorted(numbers):
      assert results[name][key] == pytest.approx(single[key], abs=1e-4), (name, key)
