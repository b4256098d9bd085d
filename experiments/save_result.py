"""Keeps a finished run as a table row: its last checkpoint, its JSON results and its commands.

  python experiments/save_result.py --workdir=/tmp/runs/fast_s0 \
      --out=results/cifar10/fast_standard_seed0 --command="python -m blur_adv.main ..."

`--workdir` may be a bucket (`gs://...`; paths go through etils.epath). Workdirs do not outlive
a session; `results/<dataset>/<row>/` is committed. Only the last
checkpoint is kept (a small CNN's is a few MB), so `python -m blur_adv.evaluate --config=...
--workdir=results/<dataset>/<row>` re-evaluates the row anywhere.
"""
import argparse

from etils import epath

RESULT_FILES = ("final_metrics.json", "eval.json")


def last_step(checkpoint_dir: epath.Path) -> str:
  steps = [p.name for p in checkpoint_dir.iterdir()] if checkpoint_dir.is_dir() else []
  steps = [name for name in steps if name.isdigit()]
  if not steps:
    raise SystemExit(f"Error: no checkpoint under {checkpoint_dir}.")
  return max(steps, key=int)


def copy_tree(source: epath.Path, target: epath.Path):
  """Copies a directory file by file through epath (shutil.copytree is local only)."""
  target.mkdir(parents=True, exist_ok=True)
  for child in source.iterdir():
    if child.is_dir():
      copy_tree(child, target / child.name)
    else:
      child.copy(target / child.name, overwrite=True)


def save(workdir: epath.PathLike, out: epath.PathLike, commands: list[str]):
  """Copies `workdir`'s last checkpoint and results into `out`; either may be local or gs://."""
  workdir, out = epath.Path(workdir), epath.Path(out)
  step = last_step(workdir / "checkpoints")
  target = out / "checkpoints" / step
  if (out / "checkpoints").exists():
    (out / "checkpoints").rmtree()  # A row keeps one checkpoint: the last.
  copy_tree(workdir / "checkpoints" / step, target)
  for name in RESULT_FILES:
    if (workdir / name).exists():
      (workdir / name).copy(out / name, overwrite=True)
  (out / "command.sh").write_text(
      "# The commands that made this row (run from the repository root).\n"
      + "\n".join(commands) + "\n")
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
