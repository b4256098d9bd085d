"""Ablation sweeps: run (or print) one training + evaluation per setting, then collect the results.

  python experiments/sweep.py --sweep=budget --config=configs/default.py --out=sweeps/budget
  python experiments/sweep.py --sweep=defense --config=configs/cifar10.py:folder --out=... --launch=print
  python experiments/sweep.py --sweep=adversary --config=configs/default.py:runlocal --out=...
  python experiments/sweep.py --sweep=defense --only=standard,augmentation ...  # a subset
  python experiments/sweep.py --sweep=budget --evaluators=clean,worst_case ...  # fewer evaluators

Each run is `python -m blur_adv.main` then `python -m blur_adv.evaluate` with the sweep's config
overrides, in its own workdir `OUT/<run name>`; finished runs (an eval.json holding every
evaluator) are skipped, so an interrupted sweep resumes: a killed training from its checkpoint, a
killed evaluation with the evaluators it had not finished. An evaluator whose recorded attack
(steps, restarts) differs from the config's is run again. `--launch=inline`
runs them in this process instead of subprocesses (no start-up per run; used by the tests).
`--launch=print` prints the commands instead (one line per run,
for a cluster scheduler) and, once the runs are done, `--launch=collect` gathers the results.
Results go to `OUT/results.csv` (every number of every eval.json, flattened), `OUT/results.md`
(the headline columns, each with its 95% bootstrap interval in brackets when the evaluators
wrote one) and `OUT/<metric>.png` plots against the swept setting.
"""

import csv
import io
import os
import shlex
import subprocess
import sys

from absl import app, flags
from etils import epath

from blur_adv import jsonio
from blur_adv.ops.families import FAMILIES


# The strong adversary: the network's proposal refined per example (trainers/adversarial.py).
STRONG = {"trainer": "adversarial", "adversary.refine_steps": 1,
          "adversary.refine_linear_steps": 4, "adversary.refine_step_size": 0.1}
# Few, strong adversarial examples: 10% of each batch, each refined by 10 classifier gradients
# (strength ~0.8 where STRONG's one gradient reaches ~0.6: benchmarks/strength_frontier.py).
SPARSE = {"trainer": "adversarial", "adversary.clean_fraction": 0.9, "adversary.refine_steps": 10,
          "adversary.refine_linear_steps": 1, "adversary.refine_step_size": 0.05,
          "adversary.refine_best_iterate": True}
AUGMENT, CONSISTENCY = {"defense.augment_probability": 0.5}, {"defense.consistency_weight": 1.0}
# The strong adversary trained at twice the table's budget (fixed in advance, not tuned): with
# one classifier gradient it reaches ~0.6 of the reference attack's gain at a given budget
# (benchmarks/strength_frontier.py), so a wider budget might find kernels about as harmful as
# the evaluation's converged attack finds at 0.1 (measured: +1.6 points at 0.1, within noise;
# README).
STRONG_WIDE = {**STRONG, "budget": 0.2}
# Gaussian noise on half of the training examples, as in the Gaussian-noise CIFAR-10-C row of
# ../shared/REFERENCE.md (Kireev et al. 2021), with sigma 0.1 of the [0, 1] range (CIFAR-10-C's
# strongest Gaussian noise), fixed in advance, not tuned: glass blur's pixel swaps are no
# convolution, so no kernel adversary covers them.
NOISE = {"defense.noise_probability": 0.5, "defense.noise_std": 0.1}


def _seeds(name, overrides, seeds=(0, 1)):
  return [(f"{name}_seed{s}", {**overrides, "seed": s}) for s in seeds]


# sweep name -> list of (run name, {config field: value}); values are Python literals.
SWEEPS = {
    "budget": [(f"budget_{b:g}", {"budget": b}) for b in (0.02, 0.05, 0.1, 0.2)],
    "family": [(f"family_{f}", {"adversary.families": (f,)}) for f in FAMILIES]
              + [("family_all", {"adversary.families": FAMILIES})],
    "adversary": [("standard", {"trainer": "standard"})]
                 + [(f"adversary_{k}", {"adversary.kind": k}) for k in ("network", "pgd", "random")],
    "inner_steps": [(f"pgd_{k}", {"adversary.kind": "pgd", "adversary.pgd_steps": k})
                    for k in (1, 3, 5, 10)],
    # Each defense alone (see blur_adv/defense/); the adversary is the default network kind.
    "defense": [
        ("standard", {"trainer": "standard"}),
        ("augmentation", {"trainer": "standard", "defense.augment_probability": 0.5}),
        ("adversarial_network", {"trainer": "adversarial", "adversary.kind": "network"}),
        ("deblur_wiener", {"trainer": "standard", "defense.front_end": "wiener"}),
        ("deblur_unet", {"trainer": "standard", "defense.front_end": "unet"}),
        ("consistency", {"trainer": "standard", "defense.consistency_weight": 1.0}),
    ],
    # The CIFAR-10 robustness table (configs/cifar10_fast.py:table): every defense on one recipe,
    # two seeds where rows are compared.
    "table": (_seeds("standard", {"trainer": "standard"})
              + _seeds("augmentation", {"trainer": "standard", **AUGMENT})
              + _seeds("consistency", {"trainer": "standard", **CONSISTENCY})
              + _seeds("adversarial_network", {"trainer": "adversarial"}, seeds=(0,))
              + _seeds("adversarial_strong", STRONG)
              + _seeds("adversarial_sparse", SPARSE, seeds=(0,))
              + _seeds("adversarial_strong_augmentation", {**STRONG, **AUGMENT}, seeds=(0,))
              + _seeds("adversarial_strong_consistency", {**STRONG, **CONSISTENCY}, seeds=(0,))
              + _seeds("adversarial_strong_budget0.2", STRONG_WIDE)
              + _seeds("adversarial_strong_budget0.2_noise", {**STRONG_WIDE, **NOISE}, seeds=(0,))),
}

# Headline columns of the markdown table: (eval.json path, header).
HEADLINE = (
    ("clean/accuracy", "clean acc"),
    ("corruptions/mean_accuracy", "blur-C acc"),
    ("worst_case/0.05/all", "worst-case acc @0.05"),
    ("worst_case/0.1/all", "worst-case acc @0.1"),
    ("minimal_flip/median", "median min-flip budget"),
    ("wall_time_s", "train time (s)"),
)

FLAGS = flags.FLAGS


def _flag(field, value):
  # ml_collections parses a tuple override as a Python literal but takes a string one verbatim.
  return f"--config.{field}={value!r}" if isinstance(value, tuple) else f"--config.{field}={value}"


# What the final evaluation of every run measures (training itself only tracks clean accuracy).
EVALUATORS = ("clean", "corruptions", "worst_case", "minimal_flip")


def run_commands(config, workdir, overrides, extra=(), evaluators=EVALUATORS):
  """The train and evaluate command lines of one run."""
  flags_ = [_flag(k, v) for k, v in overrides.items()] + [f"--config.{e}" for e in extra]
  common = [f"--config={config}", f"--workdir={workdir}"] + flags_
  return ([sys.executable, "-m", "blur_adv.main"] + common,
          [sys.executable, "-m", "blur_adv.evaluate"] + common
          + [_flag("evaluators", tuple(evaluators))])


def missing_evaluators(workdir: epath.Path, evaluators, config) -> tuple[str, ...]:
  """The `evaluators` a run's eval.json lacks (all of them before its first evaluation), or
  holds from another attack than `config`'s: a finished run is skipped, an evaluation killed
  part-way runs only what it had left, and a changed attack re-runs the evaluators it makes."""
  from blur_adv.evaluators import robustness  # pylint: disable=g-import-not-at-top  (JAX)
  done = jsonio.read_json(workdir / "eval.json")
  records = robustness.attack_records(config.robustness)

  def current(name):
    recorded = done.get(name)
    return recorded is not None and all(recorded.get(k) == v
                                        for k, v in records.get(name, {}).items())
  return tuple(name for name in evaluators if not current(name))


def load_config(config_arg, overrides, extra=()):
  """The config `run_commands` describes, built in this process (for `--launch=inline`)."""
  import ast  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, _, arg = config_arg.partition(":")
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())  # Configs import `configs.*` from the repository root.
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  values = dict(overrides)
  for item in extra:
    field, _, text = item.partition("=")
    try:
      values[field] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      values[field] = text  # A bare string, as on the command line.
  for field, value in values.items():
    *parents, leaf = field.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise ValueError(f"Sweep override of unknown config field config.{field}")
    node[leaf] = value
  return config


def run_inline(config_arg, workdir, overrides, extra=(), evaluators=EVALUATORS):
  """Trains then evaluates one run in this process, like the two commands of `run_commands`."""
  from blur_adv import evaluate, train  # pylint: disable=g-import-not-at-top
  config = load_config(config_arg, overrides, extra)
  train.train_and_evaluate(config, workdir)
  config.evaluators = tuple(evaluators)
  evaluate.evaluate_checkpoint(config, workdir)


def flatten(tree, prefix=""):
  """Nested eval.json -> {"a/b/c": number}."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, name + "/"))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      flat[name] = value
  return flat


def collect(out, runs):
  """One row per run that has results: its overrides plus every number of eval.json and
  final_metrics.json (runs not started yet are left out)."""
  rows = []
  for name, overrides in runs:
    row = {"run": name, **{f"override:{k}": repr(v) for k, v in overrides.items()}}
    found = False
    for filename in ("final_metrics.json", "eval.json"):
      found_here = jsonio.read_json(epath.Path(out) / name / filename)
      row.update(flatten(found_here))
      found = found or bool(found_here)
    if found:
      rows.append(row)
  return rows


def _cell(row, key):
  """A number with its 95% bootstrap interval when eval.json has one: "0.859 [0.852, 0.866]"."""
  value = row.get(key)
  if not isinstance(value, float):
    return str(row.get(key, "-"))
  low, high = row.get(f"{key}/ci95_lo"), row.get(f"{key}/ci95_hi")
  if isinstance(low, float) and isinstance(high, float):
    return f"{value:.4g} [{low:.4g}, {high:.4g}]"
  return f"{value:.4g}"


def write_results(out, rows):
  columns = sorted({k for row in rows for k in row}, key=lambda k: (k != "run", k))
  table = io.StringIO(newline="")
  writer = csv.DictWriter(table, fieldnames=columns)
  writer.writeheader()
  writer.writerows(rows)
  (epath.Path(out) / "results.csv").write_text(table.getvalue())
  lines = ["| run | " + " | ".join(h for _, h in HEADLINE) + " |",
           "|---" * (len(HEADLINE) + 1) + "|"]
  for row in rows:
    cells = [_cell(row, k) for k, _ in HEADLINE]
    lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
  (epath.Path(out) / "results.md").write_text("\n".join(lines) + "\n")
  return "\n".join(lines)


def plot_results(out, rows):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  paths = []
  for key, header in HEADLINE:
    values = [(row["run"], row[key]) for row in rows if isinstance(row.get(key), (int, float))]
    if not values:
      continue
    figure, axis = plt.subplots(figsize=(max(4, 0.9 * len(values)), 3.2))
    axis.bar([v[0] for v in values], [v[1] for v in values])
    axis.set_ylabel(header)
    axis.tick_params(axis="x", labelrotation=30, labelsize=7)
    figure.tight_layout()
    path = epath.Path(out) / (key.replace("/", "_") + ".png")
    with path.open("wb") as f:  # Local or gs://.
      figure.savefig(f, format="png", dpi=90)
    plt.close(figure)
    paths.append(path)
  return paths


def _write_commands(workdir: epath.Path, commands):
  """The run's two commands in `workdir/command.sh`, so a kept row says how it was made. An
  existing command.sh (e.g. a row whose training was copied, with a note saying so) is kept,
  and only commands it lacks are appended."""
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "command.sh"
  text = (path.read_text() if path.exists()
          else "# The commands that made this run (from the repository root).\n")
  lines = [shlex.join(["python"] + c[1:]) for c in commands]  # Any interpreter, not this path.
  path.write_text(text + "".join(f"{line}\n" for line in lines if line not in text.splitlines()))


def main(argv):
  del argv
  if not FLAGS.sweep or not FLAGS.out:
    raise app.UsageError("--sweep and --out are required")
  runs = all_runs = SWEEPS[FLAGS.sweep]
  if FLAGS.only:
    unknown = set(FLAGS.only) - {name for name, _ in runs}
    if unknown:
      raise app.UsageError(f"--only: no run(s) {sorted(unknown)} in sweep {FLAGS.sweep!r}; "
                           f"runs: {[name for name, _ in runs]}")
    runs = [(name, overrides) for name, overrides in runs if name in FLAGS.only]
  out = epath.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  for name, overrides in runs:
    workdir = os.fspath(out / name)
    if FLAGS.launch == "print":
      commands = run_commands(FLAGS.config, workdir, overrides, FLAGS.override, FLAGS.evaluators)
      print(" && ".join(shlex.join(c) for c in commands))
      continue
    config = load_config(FLAGS.config, overrides, FLAGS.override)
    evaluators = missing_evaluators(out / name, FLAGS.evaluators, config)
    if not evaluators or FLAGS.launch == "collect":
      continue
    # Training resumes from its last checkpoint (a finished one only re-evaluates clean).
    commands = run_commands(FLAGS.config, workdir, overrides, FLAGS.override, evaluators)
    if FLAGS.launch == "local":
      _write_commands(out / name, commands)
      for command in commands:
        print("+", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
    else:
      print("+ inline", name, overrides, flush=True)
      _write_commands(out / name, commands)
      run_inline(FLAGS.config, workdir, overrides, FLAGS.override, evaluators)
  if FLAGS.launch == "print":
    return
  rows = collect(FLAGS.out, all_runs)  # Every finished run of the sweep, not only this subset.
  print(write_results(FLAGS.out, rows))
  for path in plot_results(FLAGS.out, rows):
    print("wrote", path)


def _define_flags():
  # Defined only when run as a script, so tests can import this module next to other CLIs.
  flags.DEFINE_enum("sweep", None, sorted(SWEEPS), "Which ablation.")
  flags.DEFINE_string("config", "configs/default.py", "Base config (file[:arg]).")
  flags.DEFINE_string("out", None, "Directory holding one workdir per run and the results "
                      "(local or gs://).")
  flags.DEFINE_enum("launch", "local", ["local", "inline", "print", "collect"],
                    "Run here one after another (subprocesses or in this process), "
                    "print the commands, or only collect.")
  flags.DEFINE_list("only", None, "Run names of the sweep to keep (default: all).")
  flags.DEFINE_multi_string("override", [], "Extra `field=value` for every run.")
  flags.DEFINE_list("evaluators", list(EVALUATORS),
                    "Final evaluators of every run (default: all four; a subset is cheaper).")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
