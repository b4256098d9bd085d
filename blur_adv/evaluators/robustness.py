"""Robustness evaluators (registered by name next to `clean`) and the pictures they feed.

- "corruptions": accuracy under the CIFAR-10-C / ImageNet-C blur corruptions at severities 1-5,
  and CE / mCE / relative mCE against a baseline model's eval.json (`robustness.baseline_eval`)
  or AlexNet's published errors for the ImageNet tables. The table follows the image size unless
  `robustness.corruption_table` names one: ImageNet-C's above 64 px (so at 224 px), with AlexNet
  as the baseline; CIFAR-10-C's at 32 px, where CE needs a `baseline_eval`. In eval.json:
  `<corruption>/<severity>`, `<corruption>/mean`, `<corruption>/ce`, `mce`, `relative_mce`.
- "worst_case": accuracy under the per-example worst admissible kernel of each family at every
  SSIM budget in `robustness.budgets`, and over all families at once.
- "minimal_flip": per example, the smallest budget at which some family flips the prediction
  (minimum over families); its quartiles, the share never flipped, and the accuracy-vs-budget
  curve with its normalized area. Its bisection runs an attack at every probe, so
  `robustness.flip_attack_steps` / `flip_attack_restarts` may make that attack cheaper than
  worst_case's (a weaker attack overstates the minimal budget).

Both record their attack's steps and restarts in eval.json (`attack_steps`, `attack_restarts`).

Every headline number (clean accuracy, blur-C mean accuracy, each worst-case accuracy, the median
minimal flip budget, the share never flipped, the curve's area) has a 95% percentile-bootstrap
interval over the evaluated examples next to it: "<key>/ci95_lo" and "<key>/ci95_hi" (see
`bootstrap`).

All three run on the first `robustness.num_examples` examples of the eval split on one device:
attacks are per-example searches whose cost is dominated by the model, and every process computes
the same numbers (only process 0 writes them).
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from blur_adv import config_checks, data
from blur_adv.evaluators import bootstrap
from blur_adv.evaluators.base import Inputs, register
from blur_adv.ops import attacks, corruptions, families, measures

SEVERITIES = (1, 2, 3, 4, 5)
# Curve of accuracy against budget: dense at small budgets, where models break.
CURVE_BUDGETS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
FIELDS = ("num_examples", "budgets", "families", "kernel_size", "attack_steps", "attack_restarts",
          "attack_step_size", "flip_search_steps", "flip_attack_steps", "flip_attack_restarts",
          "corruption_table", "baseline_eval", "num_saved_examples", "convergence_examples")


def check_config(config):
  """One-line errors for `config.robustness` (run by `config_checks.validate`)."""
  rob = config.robustness
  config_checks.check_keys("robustness", rob, FIELDS)
  field = lambda name: f"robustness.{name}"
  for name in ("num_examples", "attack_steps", "attack_restarts", "num_saved_examples",
               "convergence_examples"):
    config_checks.check_int(field(name), rob[name])
  for name in ("flip_attack_steps", "flip_attack_restarts"):
    config_checks.check_int(field(name), rob[name], allow_none=True)
  config_checks.check_int(field("flip_search_steps"), rob.flip_search_steps, minimum=0)
  config_checks.check_kernel_size(field("kernel_size"), rob.kernel_size)
  config_checks.check_names(field("families"), rob.families, families.FAMILIES, "family")
  config_checks.check_number(field("attack_step_size"), rob.attack_step_size, 0, low_open=True)
  if isinstance(rob.budgets, str) or not isinstance(rob.budgets, (tuple, list)) or not rob.budgets:
    config_checks.fail(field("budgets"), rob.budgets, "must be a non-empty tuple of budgets.")
  for budget in rob.budgets:
    config_checks.check_number(field("budgets"), budget, 0, 1, low_open=True)
  if rob.corruption_table is not None and rob.corruption_table not in corruptions.TABLES:
    raise config_checks.unknown_name("corruption table", field("corruption_table"),
                                     rob.corruption_table, corruptions.TABLES)
  if rob.baseline_eval and not epath.Path(rob.baseline_eval).is_file():
    config_checks.fail(field("baseline_eval"), rob.baseline_eval, "no such file.")


config_checks.register_fields("robustness", validator=check_config)


def examples(rob, inputs: Inputs):
  """The first `rob.num_examples` eval examples as float images in [0, 1] and labels."""
  count = min(rob.num_examples, len(inputs.source))
  images, labels = inputs.source.read(np.arange(count))
  return data.to_float(images), np.asarray(labels)


def _batched_predictions(logits_fn, images, batch_size):
  return np.concatenate([np.asarray(jnp.argmax(logits_fn(images[i:i + batch_size]), -1))
                         for i in range(0, len(images), batch_size)])


def _attack_kwargs(rob):
  return dict(size=rob.kernel_size, steps=rob.attack_steps, restarts=rob.attack_restarts,
              step_size=rob.attack_step_size)


def _flip_attack_kwargs(rob):
  """The minimal-flip search's attack: `flip_attack_*` where set, else worst_case's."""
  kwargs = _attack_kwargs(rob)
  if rob.flip_attack_steps is not None:
    kwargs["steps"] = rob.flip_attack_steps
  if rob.flip_attack_restarts is not None:
    kwargs["restarts"] = rob.flip_attack_restarts
  return kwargs


def write_artifacts(rob, inputs: Inputs, results, workdir):
  """adversarial_examples.npz (at `config.budget`) and every plot the results allow."""
  from blur_adv.evaluators import plots  # pylint: disable=g-import-not-at-top  (matplotlib)
  images, labels = examples(rob, inputs)
  path = epath.Path(workdir) / "adversarial_examples.npz"
  saved = adversarial_examples(inputs.predict, images, labels, inputs.config.budget, rob,
                               jax.random.PRNGKey(inputs.config.seed + 3), rob.num_saved_examples)
  with path.open("wb") as f:  # Through epath: local or gs://.
    np.savez_compressed(f, **saved)
  return [path] + plots.write_all(results, saved, workdir)


@register("corruptions", section="robustness", write_artifacts=write_artifacts)
def corruption_accuracy(rob, inputs: Inputs):
  """Accuracy per blur corruption and severity; CE/mCE when a baseline is known."""
  images, labels = examples(rob, inputs)
  logits_fn, batch_size = inputs.predict, inputs.config.eval_batch_size
  table = rob.corruption_table or corruptions.default_table(images.shape)
  key = jax.random.PRNGKey(inputs.config.seed)
  out = {}
  errors = {}
  correct = []  # per (corruption, severity): (N,) bool
  for c, name in enumerate(corruptions.CORRUPTIONS):
    per_severity = []
    for severity in SEVERITIES:
      corrupted = []
      for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        chunk_key = jax.random.fold_in(key, (c * 10 + severity) * 100003 + start)
        corrupted.append(np.asarray(corruptions.corrupt(chunk, name, severity, table=table,
                                                        key=chunk_key)))
      predictions = _batched_predictions(logits_fn, np.concatenate(corrupted),
                                         batch_size)
      correct.append(predictions == labels)
      accuracy = float(np.mean(correct[-1]))
      out[f"{name}/{severity}"] = accuracy
      per_severity.append(1.0 - accuracy)
    errors[name] = per_severity
    out[f"{name}/mean"] = 1.0 - float(np.mean(per_severity))
  out["mean_accuracy"] = float(np.mean([out[f"{n}/mean"] for n in errors]))
  # The mean accuracy is the mean over examples of each one's share of corrupted images right.
  out.update(bootstrap.with_interval("mean_accuracy", np.mean(correct, axis=0)))
  clean_correct = _batched_predictions(logits_fn, images, batch_size) == labels
  clean_error = 1.0 - float(np.mean(clean_correct))
  out["clean_accuracy"] = 1.0 - clean_error
  out.update(bootstrap.with_interval("clean_accuracy", clean_correct))
  out.update(corruption_errors(errors, clean_error, rob.baseline_eval, table))
  return out


def corruption_errors(errors, clean_error, baseline_eval, table):
  """CE and mCE entries: against a baseline eval.json, or AlexNet for the ImageNet table; {} when
  neither applies. `errors`: corruption name -> error per severity."""
  if baseline_eval:
    base = json.loads(epath.Path(baseline_eval).read_text())["corruptions"]
    baseline = {name: [1.0 - base[f"{name}/{s}"] for s in SEVERITIES] for name in errors}
    baseline_clean = 1.0 - base["clean_accuracy"]
  elif table == "imagenet":
    baseline, baseline_clean = None, None  # the corruptions module's AlexNet defaults
  else:
    return {}
  out = {f"{name}/ce": corruptions.corruption_error(
      e, (baseline or corruptions.ALEXNET_ERRORS)[name]) for name, e in errors.items()}
  out["mce"] = corruptions.mean_corruption_error(errors, baseline)
  out["relative_mce"] = corruptions.relative_mean_corruption_error(
      errors, clean_error, baseline, baseline_clean)
  return out


def worst_case_correct(logits_fn, images, labels, rob, key, **speed):
  """`{"<budget>/<family or all or clean>": (N,) bool}`: per example, correct under that attack.

  `speed`: `batch_size`, `one_program`, `ssim_fn` of `attacks.attack_families` (the results do
  not depend on them beyond float rounding; benchmarks/eval_bench.py compares them).
  """
  out = {}
  for budget in rob.budgets:
    start = time.perf_counter()
    correct = attacks.worst_case_correct(logits_fn, images, labels, budget, key,
                                         families=tuple(rob.families), **_attack_kwargs(rob),
                                         **speed)
    out.update({f"{budget:g}/{family}": value for family, value in correct.items()})
    # Each budget is a full attack (tens of minutes on CPU for a table row): show progress.
    logging.info("Worst case at budget %g: %.4f correct over all families (%d examples, %.0f s).",
                 budget, np.mean(correct["all"]), len(labels), time.perf_counter() - start)
  return out


def accuracies_with_intervals(correct) -> dict[str, float]:
  """`{key: accuracy, "<key>/ci95_lo": .., "<key>/ci95_hi": ..}` of per-example correctness."""
  out = {}
  for key, values in correct.items():
    out[key] = float(np.mean(values))
    out.update(bootstrap.with_interval(key, values))
  return out


def worst_case_accuracies(logits_fn, images, labels, rob, key, **speed):
  """`{"<budget>/<family or all or clean>": accuracy}` at every budget of `rob` (no intervals);
  arguments as in `worst_case_correct`."""
  return {k: float(np.mean(v))
          for k, v in worst_case_correct(logits_fn, images, labels, rob, key, **speed).items()}


@register("worst_case", section="robustness", write_artifacts=write_artifacts)
def worst_case(rob, inputs: Inputs):
  """Worst-case accuracy per family and over all families, at every budget."""
  images, labels = examples(rob, inputs)
  out = accuracies_with_intervals(worst_case_correct(
      inputs.predict, images, labels, rob, jax.random.PRNGKey(inputs.config.seed + 1),
      batch_size=inputs.config.eval_batch_size))
  return {**out, **attack_record(rob)}


def _attack_record(kwargs):
  """The attack's steps and restarts, so an eval.json says which attack made its numbers."""
  return {"attack_steps": kwargs["steps"], "attack_restarts": kwargs["restarts"]}


def attack_record(rob):
  """`_attack_record` of the worst_case attack `rob` describes."""
  return _attack_record(_attack_kwargs(rob))


def attack_records(rob) -> dict[str, dict[str, int]]:
  """What the attacking evaluators record of their attack under the settings `rob`, by
  evaluator: results recorded under other settings are stale (experiments/sweep.py)."""
  return {"worst_case": attack_record(rob),
          "minimal_flip": _attack_record(_flip_attack_kwargs(rob))}


def minimal_flip_budgets(logits_fn, images, labels, rob, key, **speed):
  """Per-example minimal flip budget over all families `(N,)`, and each family's `{f: (N,)}`.

  `speed` as in `worst_case_accuracies`.
  """
  results = attacks.minimal_flip_families(
      logits_fn, images, labels, key, families=tuple(rob.families),
      search_steps=rob.flip_search_steps, **_flip_attack_kwargs(rob), **speed)
  by_family = {family: result.budget for family, result in results.items()}
  return np.min(np.stack(list(by_family.values())), axis=0), by_family


@register("minimal_flip", section="robustness", write_artifacts=write_artifacts)
def minimal_flip(rob, inputs: Inputs):
  """Distribution of the minimal blur (SSIM budget) that flips each example's prediction."""
  images, labels = examples(rob, inputs)
  overall, _ = minimal_flip_budgets(inputs.predict, images, labels, rob,
                                    jax.random.PRNGKey(inputs.config.seed + 2),
                                    batch_size=inputs.config.eval_batch_size)
  accuracies, area = attacks.accuracy_vs_budget(overall, CURVE_BUDGETS)
  # Never-flipped examples sit at +inf, so quantiles may be inf: that is the honest answer.
  q1, median, q3 = np.quantile(overall, [0.25, 0.5, 0.75], method="inverted_cdf")
  out = {"q1": float(q1), "median": float(median), "q3": float(q3),
         "never_flipped": float(np.mean(np.isinf(overall))), "curve_area": area,
         **attack_records(rob)["minimal_flip"]}
  out.update(bootstrap.with_interval("median", overall, bootstrap.median_statistic))
  out.update(bootstrap.with_interval("never_flipped", np.isinf(overall)))
  # The area is linear in the accuracies, so it is the mean of each example's own area.
  out.update(bootstrap.with_interval("curve_area", _example_areas(overall, CURVE_BUDGETS)))
  out.update({f"accuracy_at/{b:g}": float(a)
              for b, a in zip(CURVE_BUDGETS, accuracies)})
  return out


def _example_areas(flip_budgets, budgets):
  """Per example, the normalized area under its own 0/1 accuracy-vs-budget curve; their mean is
  `attacks.accuracy_vs_budget`'s area."""
  budgets = np.asarray(budgets, np.float64)
  survives = (np.asarray(flip_budgets)[None, :] > budgets[:, None]).astype(np.float64)
  widths = np.diff(budgets)[:, None]
  return np.sum(widths * (survives[1:] + survives[:-1]) / 2, axis=0) / (budgets[-1] - budgets[0])


def adversarial_examples(logits_fn, images, labels, budget, rob, key, count):
  """Clean/adversarial pairs of the strongest family per example, for re-checking: the arrays of
  adversarial_examples.npz."""
  images, labels = images[:count], labels[:count]
  best = None
  results = attacks.attack_families(logits_fn, images, labels, budget, key,
                                    families=tuple(rob.families), **_attack_kwargs(rob))
  for family, result in results.items():
    if best is None:
      best = dict(result._asdict())
      best["family"] = np.full(len(labels), family)
      continue
    better = result.loss > best["loss"]
    for k, v in result._asdict().items():
      mask = better.reshape((-1,) + (1,) * (np.ndim(v) - 1))
      best[k] = np.where(mask, v, best[k])
    best["family"] = np.where(better, family, best["family"])
  # Blurring with a normalized non-negative kernel stays in [0, 1] up to rounding; clip that
  # rounding away and measure SSIM on exactly what is saved.
  adversarial = np.clip(best["images"], 0.0, 1.0)
  return dict(
      clean=np.asarray(images), adversarial=np.asarray(adversarial),
      kernels=np.asarray(best["kernels"]), labels=np.asarray(labels),
      predictions=_batched_predictions(logits_fn, adversarial, 256),
      clean_predictions=_batched_predictions(logits_fn, images, 256),
      budget=np.float32(budget), ssim=np.asarray(measures.ssim(images, adversarial)),
      family=np.asarray(best["family"]))
