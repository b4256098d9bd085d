"""Entry point: `python -m blur_adv.main --config=configs/default.py --workdir=DIR`.

Multi-host: pass --coordinator_address/--num_processes/--process_id (or rely
on the cluster environment JAX detects) to initialize `jax.distributed`.
"""
import logging as std_logging
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_experiment_flags(workdir_help: str, flag_values=FLAGS, argv=None):
  """`--config` (with its `--config.*` overrides, looked for in `argv`, default sys.argv) and
  `--workdir`, both required: what `main` and `evaluate` share."""
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True,
                                  flag_values=flag_values, sys_argv=argv)
  flags.DEFINE_string("workdir", None, workdir_help, flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def _define_flags(flag_values=FLAGS, argv=None):
  """The command line's flags, in `flag_values`; `argv` (default sys.argv) is where the config's
  `--config.*` overrides are looked for. Tests parse README's commands with their own pair."""
  define_experiment_flags("Directory for checkpoints and metrics (local or gs://).", flag_values,
                          argv)
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).",
                      flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).",
                       flag_values=flag_values)
  flags.DEFINE_integer("process_id", None, "Index of this process (multi-host).",
                       flag_values=flag_values)
  flags.DEFINE_bool("distributed", False, "Initialize jax.distributed from the environment.",
                    flag_values=flag_values)


def _quiet_orbax(record) -> bool:
  # Orbax logs every save step at INFO; keep its warnings, drop the chatter.
  return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def _print_result(workdir: str):
  from blur_adv import jsonio, paths  # pylint: disable=g-import-not-at-top
  summary = jsonio.read_json(paths.resolve(workdir) / "final_metrics.json")  # From process 0.
  if "eval/clean/accuracy" in summary:
    print(f"Step {summary['step']}: eval accuracy {summary['eval/clean/accuracy']:.4f} "
          f"({summary['wall_time_s']:.0f} s in train_and_evaluate).")


def _unknown_override(argv, error) -> str:
  """One line for ml_collections' error on `--config.PATH=...` where the config lacks PATH."""
  text = str(error)
  key = re.search(r"'([^'\\]+)", text)
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  paths = [a.split("=")[0][len("--config."):] for a in argv[1:] if a.startswith("--config.")]
  name = key.group(1) if key else "?"
  path = next((p for p in paths if name in p.split(".")), name)
  parent = path.rsplit(".", 1)[0] + "." if "." in path else ""
  hint = f" (did you mean config.{parent}{suggestion.group(1)}?)" if suggestion else ""
  return f"Unknown config field config.{path}{hint}."


def _parse_flags(argv):
  """absl's parsing, except that an override of a field the config lacks fails in one line."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:  # What ml_collections raises for such an override.
    sys.exit(f"Error: {_unknown_override(argv, e)}")


def main(argv):
  del argv
  logging.get_absl_logger().addFilter(_quiet_orbax)
  # pylint: disable=g-import-not-at-top  (after flag parsing, so a bad command line fails at once)
  import jax
  from blur_adv import config_checks, data, parallel, train
  # pylint: enable=g-import-not-at-top
  try:
    parallel.use_single_threaded_cpu_devices(FLAGS.config.cpu_devices)
  except config_checks.ConfigError as e:
    sys.exit(f"Error: {e}")
  if FLAGS.coordinator_address or FLAGS.distributed:
    # CPU hosts need gloo for cross-process collectives; accelerators ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if jax.process_index() > 0:
    logging.set_verbosity(logging.WARNING)  # Process 0 reports for everyone.
  try:
    # Validates the config first (seconds), then loads data and trains.
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except config_checks.ConfigError as e:
    sys.exit(f"Error: {e}")
  except data.DatasetUnavailableError as e:
    data.exit_unavailable(e)
  _print_result(FLAGS.workdir)


if __name__ == "__main__":
  _define_flags()
  app.run(main, flags_parser=_parse_flags)
