"""Entry point: `python -m blur_adv.main --config=configs/default.py --workdir=DIR`.

Multi-host: pass --coordinator_address/--num_processes/--process_id (or rely
on the cluster environment JAX detects) to initialize `jax.distributed`.
"""
import json
import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
flags.DEFINE_integer("process_id", None, "Index of this process (multi-host).")
flags.DEFINE_bool("distributed", False, "Initialize jax.distributed from the environment.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
  # Orbax logs every save step at INFO; keep its warnings, drop the chatter.
  return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def _print_result(workdir: str):
  summary_path = os.path.join(workdir, "final_metrics.json")
  if os.path.exists(summary_path):  # Written by process 0 only.
    with open(summary_path) as f:
      summary = json.load(f)
    if "eval/clean/accuracy" in summary:
      print(f"Step {summary['step']}: eval accuracy {summary['eval/clean/accuracy']:.4f} "
            f"({summary['wall_time_s']:.0f} s in train_and_evaluate).")


def main(argv):
  del argv
  logging.get_absl_logger().addFilter(_quiet_orbax)
  import jax  # pylint: disable=g-import-not-at-top
  from blur_adv import config_checks  # pylint: disable=g-import-not-at-top
  # Every trainer, evaluator and config section selectable by name registers on import.
  from blur_adv import experiment  # pylint: disable=g-import-not-at-top,unused-import
  if FLAGS.coordinator_address or FLAGS.distributed:
    # CPU hosts need gloo for cross-process collectives; accelerators ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if jax.process_index() > 0:
    logging.set_verbosity(logging.WARNING)  # Process 0 reports for everyone.
  logging.info("Process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    # Fail in seconds on a bad config, before the heavy imports and data loading.
    config_checks.validate(FLAGS.config, process_count=jax.process_count(),
                           num_devices=FLAGS.config.num_devices or jax.device_count())
    from blur_adv import data, train  # pylint: disable=g-import-not-at-top
    try:
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except data.DatasetUnavailableError as e:
      sys.exit(f"Error: {e}")
    _print_result(FLAGS.workdir)
  except config_checks.ConfigError as e:
    sys.exit(f"Error: {e}")


if __name__ == "__main__":
  app.run(main)
