"""Robustness evaluators (registered by name next to `clean`) and the pictures they feed.

- "corruptions": accuracy under the CIFAR-10-C / ImageNet-C blur corruptions at severities 1-5,
  and CE / mCE / relative mCE against a baseline model's eval.json (`robustness.baseline_eval`, the path of its
  eval.json),
  or AlexNet's published errors for the ImageNet tables.
- "worst_case": accuracy under the per-example worst admissible kernel of each family at every
  SSIM budget in `robustness.budgets`, and over all families at once.
- "minimal_flip": per example, the smallest budget at which some family flips the prediction
  (minimum over families); its quartiles, the share never flipped, and the accuracy-vs-budget
  curve with its normalized area.

All three run on the first `robustness.num_examples` examples of the eval split on one device:
attacks are per-example searches whose cost is dominated by the model, and every process computes
the same numbers (only process 0 writes them).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv import attacks, config_checks, corruptions, data, metrics, plots
from blur_adv.evaluators import EVALUATORS

config_checks.register_fields("robustness")
EVALUATOR_NAMES = ("corruptions", "worst_case", "minimal_flip")
SEVERITIES = (1, 2, 3, 4, 5)
# Curve of accuracy against budget: dense at small budgets, where models break.
CURVE_BUDGETS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)


def examples(experiment):
  """The first `num_examples` eval examples as float images in [0, 1] and labels."""
  count = min(experiment.config.robustness.num_examples, len(experiment.eval_source))
  images, labels = experiment.eval_source.read(np.arange(count))
  return data.to_float(images), np.asarray(labels)


def logits_function(experiment, state):
  """A jitted single-device `images -> logits` of the current classifier (eval mode)."""
  host = experiment.parallel.unreplicate(state)
  variables = {"params": host.params, "batch_stats": host.batch_stats}
  return jax.jit(lambda x: host.apply_fn(variables, x, train=False))


def _inputs(experiment, state):
  """What every robustness evaluator starts from: its settings, examples and classifier."""
  images, labels = examples(experiment)
  return experiment.config.robustness, images, labels, logits_function(experiment, state)


def _batched_predictions(logits_fn, images, batch_size):
  return np.concatenate([np.asarray(jnp.argmax(logits_fn(images[i:i + batch_size]), -1))
                         for i in range(0, len(images), batch_size)])


def _attack_kwargs(rob):
  return dict(size=rob.kernel_size, steps=rob.attack_steps, restarts=rob.attack_restarts,
              step_size=rob.attack_step_size)


@EVALUATORS.register("corruptions")
def corruption_accuracy(experiment, state, eval_step):
  """Accuracy per blur corruption and severity; CE/mCE when a baseline is known."""
  del eval_step
  rob, images, labels, logits_fn = _inputs(experiment, state)
  table = rob.corruption_table or corruptions.default_table(images.shape)
  key = jax.random.PRNGKey(experiment.config.seed)
  out = {}
  errors = {}
  for c, name in enumerate(corruptions.CORRUPTIONS):
    per_severity = []
    for severity in SEVERITIES:
      corrupted = []
      for start in range(0, len(images), experiment.config.eval_batch_size):
        chunk = images[start:start + experiment.config.eval_batch_size]
        chunk_key = jax.random.fold_in(key, (c * 10 + severity) * 100003 + start)
        corrupted.append(np.asarray(corruptions.corrupt(chunk, name, severity, table=table,
                                                        key=chunk_key)))
      predictions = _batched_predictions(logits_fn, np.concatenate(corrupted),
                                         experiment.config.eval_batch_size)
      accuracy = float(np.mean(predictions == labels))
      out[f"{name}/{severity}"] = accuracy
      per_severity.append(1.0 - accuracy)
    errors[name] = per_severity
    out[f"{name}/mean"] = 1.0 - float(np.mean(per_severity))
  out["mean_accuracy"] = float(np.mean([out[f"{n}/mean"] for n in errors]))
  clean_error = 1.0 - float(np.mean(_batched_predictions(
      logits_fn, images, experiment.config.eval_batch_size) == labels))
  out["clean_accuracy"] = 1.0 - clean_error
  out.update(_corruption_errors(errors, clean_error, rob.baseline_eval, table))
  return out


def _corruption_errors(errors, clean_error, baseline_eval, table):
  """CE and mCE entries: against a baseline eval.json, or AlexNet for the ImageNet tables."""
  if baseline_eval:
    with open(baseline_eval) as f:
      base = json.load(f)["corruptions"]
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


@EVALUATORS.register("worst_case")
def worst_case(experiment, state, eval_step):
  """Worst-case accuracy per family and over all families, at every budget."""
  del eval_step
  rob, images, labels, logits_fn = _inputs(experiment, state)
  key = jax.random.PRNGKey(experiment.config.seed + 1)
  out = {}
  for budget in rob.budgets:
    accuracy = attacks.worst_case_accuracy(logits_fn, images, labels, budget, key,
                                           families=tuple(rob.families), **_attack_kwargs(rob))
    out.update({f"{budget:g}/{family}": value for family, value in accuracy.items()})
  return out


def minimal_flip_budgets(logits_fn, images, labels, rob, key):
  """Per-example minimal flip budget over all families `(N,)`, and each family's `{f: (N,)}`."""
  by_family = {}
  for index, family in enumerate(rob.families):
    result = attacks.minimal_flip_budget(
        logits_fn, images, labels, jax.random.fold_in(key, index), family=family,
        search_steps=rob.flip_search_steps, **_attack_kwargs(rob))
    by_family[family] = np.asarray(result.budget)
  return np.min(np.stack(list(by_family.values())), axis=0), by_family


@EVALUATORS.register("minimal_flip")
def minimal_flip(experiment, state, eval_step):
  """Distribution of the minimal blur (SSIM budget) that flips each example's prediction."""
  del eval_step
  rob, images, labels, logits_fn = _inputs(experiment, state)
  overall, _ = minimal_flip_budgets(logits_fn, images, labels, rob,
                                    jax.random.PRNGKey(experiment.config.seed + 2))
  accuracies, area = attacks.accuracy_vs_budget(overall, CURVE_BUDGETS)
  # Never-flipped examples sit at +inf, so quantiles may be inf: that is the honest answer.
  q1, median, q3 = np.quantile(overall, [0.25, 0.5, 0.75], method="inverted_cdf")
  out = {"q1": float(q1), "median": float(median), "q3": float(q3),
         "never_flipped": float(np.mean(np.isinf(overall))), "curve_area": area}
  out.update({f"accuracy_at/{b:g}": float(a)
              for b, a in zip(CURVE_BUDGETS, accuracies)})
  return out


def write_adversarial_examples(path, logits_fn, images, labels, budget, rob, key, count):
  """Saves clean/adversarial pairs of the strongest family per example, for re-checking."""
  images, labels = images[:count], labels[:count]
  best = None
  for index, family in enumerate(rob.families):
    result = attacks.attack(logits_fn, images, labels, budget, jax.random.fold_in(key, index),
                            family=family, **_attack_kwargs(rob))
    loss = np.asarray(result.loss)
    if best is None:
      best = {k: np.asarray(v) for k, v in result._asdict().items()}
      best["family"] = np.full(len(labels), family)
      continue
    better = loss > best["loss"]
    for k, v in result._asdict().items():
      mask = better.reshape((-1,) + (1,) * (np.ndim(v) - 1))
      best[k] = np.where(mask, np.asarray(v), best[k])
    best["family"] = np.where(better, family, best["family"])
  # Blurring with a normalized non-negative kernel stays in [0, 1] up to rounding; clip that
  # rounding away and measure SSIM on exactly what is saved.
  adversarial = np.clip(best["images"], 0.0, 1.0)
  np.savez_compressed(
      path, clean=images, adversarial=adversarial, kernels=best["kernels"], labels=labels,
      predictions=_batched_predictions(logits_fn, adversarial, 256),
      clean_predictions=_batched_predictions(logits_fn, images, 256),
      budget=np.float32(budget), ssim=np.asarray(metrics.ssim(images, adversarial)),
      family=best["family"])
  return path


def write_artifacts(experiment, state, results, workdir):
  """adversarial_examples.npz (at `config.budget`) and every plot the results allow."""
  rob = experiment.config.robustness
  images, labels = examples(experiment)
  path = os.path.join(workdir, "adversarial_examples.npz")
  write_adversarial_examples(path, logits_function(experiment, state), images, labels,
                             experiment.config.budget, rob,
                             jax.random.PRNGKey(experiment.config.seed + 3),
                             rob.num_saved_examples)
  with np.load(path) as saved:
    return [path] + plots.write_all(results, dict(saved), workdir)
