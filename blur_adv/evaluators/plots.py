"""PNG plots of an evaluation: corruption severity curves, accuracy vs SSIM budget, a gallery."""

import matplotlib
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def _save(figure, path):
  figure.tight_layout()
  with epath.Path(path).open("wb") as f:  # matplotlib writes to local paths only; gs:// too.
    figure.savefig(f, format="png", dpi=90)
  plt.close(figure)
  return path


def corruption_severity(results, path):
  """Accuracy against severity (0 = clean) per corruption, from eval.json's "corruptions"."""
  found = results.get("corruptions", {})
  names = sorted({key.split("/")[0] for key in found if key.split("/")[-1].isdigit()})
  if not names:
    return None
  figure, axis = plt.subplots(figsize=(5, 3.6))
  for name in names:
    severities = sorted(int(k.split("/")[1]) for k in found
                        if k.startswith(f"{name}/") and k.split("/")[1].isdigit())
    values = [found[f"{name}/{s}"] for s in severities]
    if "clean_accuracy" in found:
      severities, values = [0] + severities, [found["clean_accuracy"]] + values
    axis.plot(severities, values, marker="o", label=name)
  axis.set(xlabel="severity (0 = clean)", ylabel="accuracy", ylim=(0, 1))
  axis.legend(fontsize=7)
  return _save(figure, path)


def accuracy_vs_budget(results, path):
  """Worst-case accuracy per family and the minimal-flip curve against the SSIM budget."""
  worst = {}
  for key, value in results.get("worst_case", {}).items():
    if key.count("/") != 1:  # "<budget>/<family>/ci95_lo" etc.: the intervals
      continue
    budget, family = key.split("/")
    worst.setdefault(family, []).append((float(budget), value))
  flips = results.get("minimal_flip", {})
  curve = sorted((float(k.split("/")[-1]), v) for k, v in flips.items()
                 if k.startswith("accuracy_at/"))
  if not worst and not curve:
    return None
  figure, axis = plt.subplots(figsize=(7.5, 3.6))
  for family, points in sorted(worst.items()):
    points.sort()
    axis.plot(*zip(*points), marker="o",
              label="clean (no blur)" if family == "clean" else f"worst case: {family}",
              linewidth=2.5 if family == "all" else 1)
  if curve:
    axis.plot(*zip(*curve), color="black", linestyle="--",
              label=f"minimal flip, all families (area {flips.get('curve_area', 0):.3f})")
  axis.set_xscale("symlog", linthresh=0.01)
  axis.set(xlabel="SSIM budget (1 - SSIM allowed)", ylabel="accuracy", ylim=(0, 1), xlim=(0, 1))
  # Beside the axes: inside, up to nine entries cover the curves wherever they are put.
  axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
  return _save(figure, path)


def kernel_gallery(adversarial_examples, path, count=8):
  """Clean image, worst-case blurred image and kernel for the first `count` saved examples."""
  clean = adversarial_examples["clean"][:count]
  figure, axes = plt.subplots(3, len(clean), figsize=(1.6 * len(clean), 5.2), squeeze=False)
  for i in range(len(clean)):
    adversarial = adversarial_examples["adversarial"][i]
    show = lambda image: image[..., 0] if image.shape[-1] == 1 else image
    axes[0, i].imshow(show(clean[i]), cmap="gray", vmin=0, vmax=1)
    axes[0, i].set_title(f"label {adversarial_examples['labels'][i]}", fontsize=7)
    axes[1, i].imshow(show(adversarial), cmap="gray", vmin=0, vmax=1)
    axes[1, i].set_title(f"pred {adversarial_examples['predictions'][i]} "
                         f"SSIM {adversarial_examples['ssim'][i]:.2f}", fontsize=7)
    axes[2, i].imshow(adversarial_examples["kernels"][i], cmap="magma")
    axes[2, i].set_title(str(adversarial_examples["family"][i]), fontsize=7)
  for axis in axes.ravel():
    axis.axis("off")
  return _save(figure, path)


def write_all(results, adversarial_examples, directory):
  """Writes every plot that eval.json's results allow into `directory`; returns the paths."""
  join = lambda name: epath.Path(directory) / name
  paths = [corruption_severity(results, join("accuracy_vs_severity.png")),
           accuracy_vs_budget(results, join("accuracy_vs_budget.png"))]
  if adversarial_examples is not None:
    paths.append(kernel_gallery(adversarial_examples, join("kernel_gallery.png")))
  return [p for p in paths if p]
