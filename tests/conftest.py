"""Shared helpers for the training-system tests.

Multi-device and multi-process cases run in subprocesses: XLA's device count
is fixed when JAX starts, and pytest-xdist workers may have started it already.
"""
import os
import socket
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)  # So tests can import `configs.*` like the CLI does.


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: a test that takes more than ~30 s on 2 CPU cores.")


def subprocess_env(num_devices: int | None = None) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  env.pop("XLA_FLAGS", None)
  if num_devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  return env


def start_python(args, num_devices=None, log_path=None) -> subprocess.Popen:
  """Starts `python args...` in the repo root; output goes to `log_path`."""
  out = open(log_path, "w") if log_path else subprocess.DEVNULL  # pylint: disable=consider-using-with
  return subprocess.Popen([sys.executable] + list(args), cwd=REPO, env=subprocess_env(num_devices),
                          stdout=out, stderr=subprocess.STDOUT)


def run_python(args, num_devices=None, timeout=240) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable] + list(args), cwd=REPO, env=subprocess_env(num_devices),
                        capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def tiny_config():
  """The default experiment shrunk to a seconds-long run (`:runlocal`)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  return default.get_config("runlocal")
