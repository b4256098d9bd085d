"""The package's shape: no import cycles, light entry points, bad configs failing in one line."""
import ast
import os
import subprocess
import sys
import time

import pytest

import blur_adv  # Light: reads no module but the alias table.
from conftest import REPO, run_python, subprocess_env

PACKAGE = os.path.join(REPO, "blur_adv")


def _module_names():
  """Every module of blur_adv by dotted name -> its file."""
  modules = {}
  for root, _, files in os.walk(PACKAGE):
    for file in files:
      if file.endswith(".py"):
        parts = os.path.relpath(os.path.join(root, file), REPO)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts.pop()
        modules[".".join(parts)] = os.path.join(root, file)
  return modules


def import_graph():
  """module -> the blur_adv modules it imports anywhere (module level and inside functions)."""
  modules = _module_names()
  aliases = {f"blur_adv.{old}": new for old, new in blur_adv.ALIASES.items()}

  def resolve(name):
    name = aliases.get(name, name)
    return name if name in modules else None

  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        targets |= {resolve(alias.name) for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for alias in node.names:  # `from a import b`: the submodule a.b if it is one, else a.
          targets.add(resolve(f"{node.module}.{alias.name}") or resolve(node.module))
    graph[name] = sorted(t for t in targets if t and t != name)
  return graph


def find_cycle(graph):
  """One import cycle as a list of modules (first == last), or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in graph.get(node, ()):
      if state.get(target) == "open":
        return stack[stack.index(target):] + [target]
      if target not in state:
        cycle = visit(target)
        if cycle:
          return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_find_cycle_sees_a_cycle():
  assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_blur_adv_has_no_import_cycle():
  graph = import_graph()
  assert "blur_adv.config_checks" in graph and "blur_adv.ops.kernels" in graph
  # The walk sees function-level imports too (defense.config imports front_end inside check).
  assert "blur_adv.defense.front_end" in graph["blur_adv.defense.config"]
  cycle = find_cycle(graph)
  assert cycle is None, " -> ".join(cycle)


def test_package_and_configs_import_no_jax_and_training_no_tensorflow():
  code = ("import sys\n"
          "import blur_adv\n"
          "from configs import default\n"
          "default.get_config()\n"
          "heavy = [m for m in ('jax', 'flax', 'orbax', 'optax') if m in sys.modules]\n"
          "assert not heavy, heavy\n"
          "import blur_adv.experiment, blur_adv.train, tempfile\n"
          "from blur_adv import writers\n"  # Training writes TensorBoard events without TF.
          "w = writers.create_writer(tempfile.mkdtemp(), is_chief=True)\n"
          "w.write_hparams({'lr': 0.1}); w.write_scalars(1, {'loss': 1.0}); w.close()\n"
          "assert 'tensorflow' not in sys.modules\n")
  result = run_python(["-c", code], timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("override,field", [
    ("--config.adversary.kernel_size=6", "config.adversary.kernel_size"),
    ("--config.robustness.families=('gaussian','motoin')", "config.robustness.families"),
    ("--config.learning_rate=nan", "config.learning_rate"),
    ("--config.batch_sise=64", "config.batch_sise"),
])
def test_bad_config_fails_in_one_line_naming_the_field(tmp_path, override, field):
  start = time.time()
  result = subprocess.run(
      [sys.executable, "-m", "blur_adv.main", "--config=configs/default.py",
       f"--workdir={tmp_path}", override],
      cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False)
  elapsed = time.time() - start
  errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
  assert result.returncode != 0
  assert len(errors) == 1 and field in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  # About 2 s alone on 2 CPU cores (5 s is the bar); the margin is for a loaded test machine.
  assert elapsed < 15, elapsed
