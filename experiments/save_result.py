"""Keeps a finished run as a table row: its last checkpoint, its JSON results and its commands.

  python experiments/save_result.py --workdir=/tmp/runs/fast_s0 \
      --out=results/cifar10/fast_standard_seed0 --command="python -m blur_adv.main ..."

Workdirs do not outlive a session; `results/<dataset>/<row>/` is committed. Only the last
checkpoint is kept (a small CNN's is a few MB), so `python -m blur_adv.evaluate --config=...
--workdir=results/<dataset>/<row>` re-evaluates the row anywhere.
"""
import argparse
import os
import shutil

RESULT_FILES = ("final_metrics.json", "eval.json")


def last_step(checkpoint_dir: str) -> str:
  steps = [name for name in os.listdir(checkpoint_dir) if name.isdigit()]
  if not steps:
    raise SystemExit(f"Error: no checkpoint under {checkpoint_dir}.")
  return max(steps, key=int)


def save(workdir: str, out: str, commands: list[str]):
  step = last_step(os.path.join(workdir, "checkpoints"))
  target = os.path.join(out, "checkpoints", step)
  if os.path.exists(os.path.join(out, "checkpoints")):
    shutil.rmtree(os.path.join(out, "checkpoints"))  # A row keeps one checkpoint: the last.
  shutil.copytree(os.path.join(workdir, "checkpoints", step), target)
  for name in RESULT_FILES:
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copy2(os.path.join(workdir, name), os.path.join(out, name))
  with open(os.path.join(out, "command.sh"), "w") as f:
    f.write("# The commands that made this row (run from the repository root).\n")
    f.write("\n".join(commands) + "\n")
  return target


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--command", action="append", required=True,
                      help="A command that made the row; repeat for several (train, evaluate).")
  args = parser.parse_args()
  print("Saved", save(args.workdir, args.out, args.command))


if __name__ == "__main__":
  main()
