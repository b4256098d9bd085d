"""Shared helpers for the training-system tests.

Multi-device and multi-process cases run in subprocesses: XLA's device count
is fixed when JAX starts, and pytest-xdist workers may have started it already.

Compilation dominates the suite (a `:runlocal` training is ~2/3 XLA compiles), and many tests
compile the same programs in different processes: both xdist workers, and the `blur_adv.main`
/ sweep subprocesses. So one session shares one JAX persistent compilation cache, a fresh
temporary directory made by the controlling process (workers and subprocesses inherit it through
the environment) and removed at the end: every run starts cold, nothing outlives the session.
`BLUR_ADV_TEST_JAX_CACHE=DIR` keeps the cache in DIR instead (kept afterwards: repeated local
runs start warm); `BLUR_ADV_TEST_JAX_CACHE=off` disables it.

For the same reason the session (and its subprocesses) sets JAX's `jax_disable_most_optimizations`:
XLA then skips most of its optimization passes, which on the suite's tiny shapes cost far more than
they save (the defense-sweep test: 117 -> 70 s of CPU, identical results table). Semantics do not
change; exactness tests compare runs made under the same setting. `BLUR_ADV_TEST_XLA_OPTIMIZE=1`
runs the suite fully optimized instead.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)  # So tests can import `configs.*` like the CLI does.


_CACHE_ENV = "BLUR_ADV_TEST_JAX_CACHE"
_made_cache_dir = None


def _use_compilation_cache(directory):
  """Points this process's JAX (and, through os.environ, every child process) at `directory`."""
  settings = {
      "JAX_COMPILATION_CACHE_DIR": directory,
      # Programs, not the thousands of op-by-op dispatches of eager code: storing those costs
      # more than compiling them again.
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.3",
      "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
      # No size limit: with one, JAX scans the whole directory on every write. (Without its lock
      # a reader may meet an entry still being written; JAX then warns and compiles.)
      "JAX_COMPILATION_CACHE_MAX_SIZE": "-1",
  }
  os.environ.update(settings)
  if "jax" in sys.modules:  # Imported before this conftest: the environment was read already.
    import jax  # pylint: disable=g-import-not-at-top
    for name, value in settings.items():
      parsed = value if name.endswith("DIR") else float(value) if "." in value else int(value)
      jax.config.update(name.lower(), parsed)


_SHARED_ENV = "BLUR_ADV_TEST_SHARED_DIR"
_made_shared_dir = None


def _compile_cheaply():
  """Most XLA optimizations off, in this process and (through os.environ) its children."""
  if os.environ.get("BLUR_ADV_TEST_XLA_OPTIMIZE") == "1":
    return
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  if "jax" in sys.modules:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_disable_most_optimizations", True)


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: a test that takes more than ~30 s on 2 CPU cores.")
  _compile_cheaply()
  global _made_cache_dir, _made_shared_dir
  if not os.environ.get(_SHARED_ENV):  # The controller: one directory for this session's workers.
    _made_shared_dir = tempfile.mkdtemp(prefix="blur_adv_test_shared_")
    os.environ[_SHARED_ENV] = _made_shared_dir
  directory = os.environ.get(_CACHE_ENV)
  if directory == "off":
    return
  if not directory:  # The controller (or a run without xdist): a fresh cache for this session.
    directory = _made_cache_dir = tempfile.mkdtemp(prefix="blur_adv_jax_cache_")
    os.environ[_CACHE_ENV] = directory  # xdist workers, started later, inherit it.
  os.makedirs(directory, exist_ok=True)
  _use_compilation_cache(directory)


def pytest_collection_modifyitems(config, items):
  """Runs the `slow` tests first, so that pytest-xdist starts them on both workers at once
  instead of leaving one of them to finish a long test alone at the end. Tests using a module-
  or session-scoped fixture keep their place (moving them would set the fixture up twice)."""
  del config

  def movable(item):
    if item.get_closest_marker("slow") is None:
      return False
    defs = getattr(item, "_fixtureinfo", None)
    defs = defs.name2fixturedefs.values() if defs else ()
    return all(d[-1].scope == "function" for d in defs if d)

  first = [item for item in items if movable(item)]
  rest = [item for item in items if not movable(item)]
  items[:] = first + rest


def pytest_unconfigure(config):
  del config
  for directory in (_made_cache_dir, _made_shared_dir):
    if directory:
      shutil.rmtree(directory, ignore_errors=True)


def computed_once(name: str, compute):
  """`compute()`'s JSON result, computed by one process of the session and read by the others.

  A module-scoped fixture runs once per pytest-xdist worker that runs one of its tests; for an
  expensive one (a multi-device training) the second worker waits for the first's result instead.
  """
  import fcntl  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.environ[_SHARED_ENV], name + ".json")
  with open(path + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Held while computing: the other worker waits here.
    if not os.path.exists(path):
      result = compute()
      with open(path + ".tmp", "w") as f:
        json.dump(result, f)
      os.replace(path + ".tmp", path)
    with open(path) as f:
      return json.load(f)


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
