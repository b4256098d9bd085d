"""Ablation sweeps: run (or print) one training + evaluation per setting, then collect the results.

  python experiments/sweep.py --sweep=budget --config=configs/default.py --out=sweeps/budget
  python experiments/sweep.py --sweep=defense --config=configs/cifar10.py:folder --out=... --launch=print
  python experiments/sweep.py --sweep=adversary --config=configs/default.py:runlocal --out=...

Each run is `python -m blur_adv.main` then `python -m blur_adv.evaluate` with the sweep's config
overrides, in its own workdir `OUT/<run name>`; finished runs (an eval.json present) are skipped,
so an interrupted sweep resumes. `--launch=print` prints the commands instead (one line per run,
for a cluster scheduler) and, once the runs are done, `--launch=collect` gathers the results.
Results go to `OUT/results.csv` (every number of every eval.json, flattened), `OUT/results.md`
(the headline columns) and `OUT/<metric>.png` plots against the swept setting.
"""

import csv
import json
import os
import shlex
import subprocess
import sys

from absl import app, flags

FAMILIES = ("gaussian", "anisotropic_gaussian", "defocus", "motion", "box", "motion_path",
            "free_form")

# sweep name -> list of (run name, {config field: value}); values are Python literals.
SWEEPS = {
    "budget": [(f"budget_{b:g}", {"budget": b}) for b in (0.02, 0.05, 0.1, 0.2)],
    "family": [(f"family_{f}", {"adversary.families": (f,)}) for f in FAMILIES]
              + [("family_all", {"adversary.families": FAMILIES})],
    "adversary": [("standard", {"trainer": "standard"})]
                 + [(f"adversary_{k}", {"adversary.kind": k}) for k in ("network", "pgd", "random")],
    "inner_steps": [(f"pgd_{k}", {"adversary.kind": "pgd", "adversary.pgd_steps": k})
                    for k in (1, 3, 5, 10)],
    # Defenses wired into training so far; augmentation, deblurring front-ends and the
    # consistency loss exist as functions (blur_adv/augment.py, deblur.py) but not yet as configs.
    "defense": [
        ("standard", {"trainer": "standard"}),
        ("random_kernels_at_budget", {"adversary.kind": "random"}),
        ("adversarial_network", {"adversary.kind": "network"}),
        ("adversarial_pgd", {"adversary.kind": "pgd"}),
    ],
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

_SWEEP = flags.DEFINE_enum("sweep", None, sorted(SWEEPS), "Which ablation.")
_CONFIG = flags.DEFINE_string("config", "configs/default.py", "Base config (file[:arg]).")
_OUT = flags.DEFINE_string("out", None, "Directory holding one workdir per run and the results.")
_LAUNCH = flags.DEFINE_enum("launch", "local", ["local", "print", "collect"],
                            "Run here one after another, print the commands, or only collect.")
_EXTRA = flags.DEFINE_multi_string("override", [], "Extra `field=value` for every run.")


def _flag(field, value):
  return f"--config.{field}={value!r}" if isinstance(value, (tuple, str)) else \
      f"--config.{field}={value}"


# What the final evaluation of every run measures (training itself only tracks clean accuracy).
EVALUATORS = ("clean", "corruptions", "worst_case", "minimal_flip")


def run_commands(config, workdir, overrides, extra=()):
  """The train and evaluate command lines of one run."""
  flags_ = [_flag(k, v) for k, v in overrides.items()] + [f"--config.{e}" for e in extra]
  common = [f"--config={config}", f"--workdir={workdir}"] + flags_
  return ([sys.executable, "-m", "blur_adv.main"] + common,
          [sys.executable, "-m", "blur_adv.evaluate"] + common + [_flag("evaluators", EVALUATORS)])


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
  """One row per finished run: its overrides plus every number of eval.json and final_metrics."""
  rows = []
  for name, overrides in runs:
    row = {"run": name, **{f"override:{k}": repr(v) for k, v in overrides.items()}}
    for filename in ("final_metrics.json", "eval.json"):
      path = os.path.join(out, name, filename)
      if os.path.exists(path):
        with open(path) as f:
          row.update(flatten(json.load(f)))
    rows.append(row)
  return rows


def write_results(out, rows):
  columns = sorted({k for row in rows for k in row}, key=lambda k: (k != "run", k))
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| run | " + " | ".join(h for _, h in HEADLINE) + " |",
           "|---" * (len(HEADLINE) + 1) + "|"]
  for row in rows:
    cells = [f"{row[k]:.4g}" if isinstance(row.get(k), float) else str(row.get(k, "-"))
             for k, _ in HEADLINE]
    lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
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
    path = os.path.join(out, key.replace("/", "_") + ".png")
    figure.savefig(path, dpi=90)
    plt.close(figure)
    paths.append(path)
  return paths


def main(argv):
  del argv
  if not _SWEEP.value or not _OUT.value:
    raise app.UsageError("--sweep and --out are required")
  runs = SWEEPS[_SWEEP.value]
  os.makedirs(_OUT.value, exist_ok=True)
  for name, overrides in runs:
    workdir = os.path.join(_OUT.value, name)
    commands = run_commands(_CONFIG.value, workdir, overrides, _EXTRA.value)
    if _LAUNCH.value == "print":
      print(" && ".join(shlex.join(c) for c in commands))
    elif _LAUNCH.value == "local" and not os.path.exists(os.path.join(workdir, "eval.json")):
      for command in commands:
        print("+", shlex.join(command), flush=True)
        subprocess.run(command, check=True)
  if _LAUNCH.value == "print":
    return
  rows = collect(_OUT.value, runs)
  print(write_results(_OUT.value, rows))
  for path in plot_results(_OUT.value, rows):
    print("wrote", path)


if __name__ == "__main__":
  app.run(main)
