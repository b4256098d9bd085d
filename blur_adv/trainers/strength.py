"""How strong the training adversary is: its loss gain over that of a reference attack.

On a fixed probe batch (the first `adversary.strength_examples` images of the training split's
fixed order) and the current classifier, at the training budget `config.budget`:

- the adversary's kernels (`Trainer.adversary`: what a train step would propose, fixed key) and
- the reference: the per-example attack over every family of `adversary.families` (sign steps,
  `strength_attack_steps` steps and `strength_attack_restarts` random starts per family, the
  worst family per example; `ops/attacks.py`)

each raise the mean cross-entropy over the clean one ("loss gain") and flip some correctly
classified examples ("flip rate"). `adversary/strength` is the adversary's gain over the
reference's: about 1 when the amortized adversary finds what a per-example search finds, near 0
when it barely blurs where it matters. Both are measured on the classifier as trained and
attacked during training: the plain model in eval mode, without the configured test-time
augmentation. (Against the test-time-augmented model the ratio would also measure how well the
adversary's kernels transfer to views it never attacks, and the reference would cost 6x with
`flip_translate`.)

The classifier reaches the attacks as `attacks.model_logits_fn` (the variables are pytree
leaves), so the weights are traced arguments: the reference attack compiles at the first
measurement only, and later ones reuse it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blur_adv import data
from blur_adv.models.test_time_augmentation import without_test_time_augmentation
from blur_adv.ops import attacks
from blur_adv.ops import blur as blur_lib

# Keys of the probe's adversary proposals and of the reference attack's random starts: fixed, so
# successive measurements differ only through the networks.
_ADVERSARY_SEED, _REFERENCE_SEED = 4, 5


def enabled(config, trainer) -> bool:
  return config.adversary.strength_every_steps > 0 and trainer.adversary is not None


def due(config, trainer, step: int, is_last: bool) -> bool:
  """Whether training measures the adversary's strength after `step` (and always at the end)."""
  every = config.adversary.strength_every_steps
  return enabled(config, trainer) and (is_last or step % every == 0)


def probe_batch(config, source: data.Source) -> tuple[np.ndarray, np.ndarray]:
  """The first `adversary.strength_examples` training images (float) and labels."""
  images, labels = source.read(np.arange(min(config.adversary.strength_examples, len(source))))
  return data.to_float(images), np.asarray(labels)


def _cross_entropy(logits, labels):
  return np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def summarize(clean_logits, labels, adversary_loss, adversary_wrong, reference_loss,
              reference_wrong) -> dict[str, float]:
  """Loss gains, flip rates and their ratio from per-example values `(N,)`.

  Flip rate: the share of the examples classified correctly clean that the attack misclassifies
  (nan when none is correct). Strength: adversary gain / reference gain (nan unless the
  reference gain is positive).
  """
  clean_loss = _cross_entropy(clean_logits, labels)
  correct = np.asarray(jnp.argmax(clean_logits, -1)) == labels
  flips = lambda wrong: float(np.mean(wrong[correct])) if correct.any() else float("nan")
  gain = float(np.mean(adversary_loss - clean_loss))
  reference_gain = float(np.mean(reference_loss - clean_loss))
  return {"adversary/loss_gain": gain, "adversary/reference_loss_gain": reference_gain,
          "adversary/strength": gain / reference_gain if reference_gain > 0 else float("nan"),
          "adversary/flip_rate": flips(adversary_wrong),
          "adversary/reference_flip_rate": flips(reference_wrong),
          "adversary/clean_accuracy": float(np.mean(correct))}


def reference_attack(logits_fn, images, labels, budget, key, adv):
  """Per example, the worst family's attack loss (cross-entropy) and whether some family
  misclassifies it, both `(N,)`."""
  results = attacks.attack_families(
      logits_fn, images, labels, budget, key, families=tuple(adv.families), size=adv.kernel_size,
      steps=adv.strength_attack_steps, restarts=adv.strength_attack_restarts)
  loss = np.max(np.stack([r.loss for r in results.values()]), axis=0)
  wrong = np.any(np.stack([r.success for r in results.values()]), axis=0)
  return loss, wrong


@functools.lru_cache(maxsize=None)
def _jitted(fn):
  """One `jax.jit` per function, so that repeated measurements reuse its compilation."""
  return jax.jit(fn)


def measure(config, trainer, host_state, images, labels) -> dict[str, float]:
  """`adversary/...` numbers of `host_state` (one device's, unreplicated) on the probe batch."""
  adv = config.adversary
  variables = {"params": host_state.params, "batch_stats": host_state.batch_stats}
  predict = logits_fn = attacks.model_logits_fn(
      without_test_time_augmentation(host_state.apply_fn), variables)
  kernels, mixture = _jitted(trainer.adversary)(
      host_state, images, labels, jax.random.PRNGKey(config.seed + _ADVERSARY_SEED))
  attacked_logits = predict(blur_lib.blur(images, kernels))
  reference_loss, reference_wrong = reference_attack(
      logits_fn, images, labels, config.budget,
      jax.random.PRNGKey(config.seed + _REFERENCE_SEED), adv)
  out = summarize(predict(images), labels, _cross_entropy(attacked_logits, labels),
                  np.asarray(jnp.argmax(attacked_logits, -1)) != labels, reference_loss,
                  reference_wrong)
  if mixture is not None:
    out.update({f"adversary/mixture/{family}": float(weight)
                for family, weight in zip(adv.families, np.asarray(mixture))})
  return out
