"""Training losses: cross-entropy and the blur-consistency term, alone or together."""

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def consistency_loss(logits_clean, logits_blurred):
  """Mean Jensen-Shannon divergence (nats, in [0, log 2]) between the two predicted distributions.

  JS rather than symmetric KL: it is bounded, so one confidently wrong blurred prediction cannot
  dominate the batch. Gradients flow into both branches.
  """
  logits_clean, logits_blurred = jnp.asarray(logits_clean), jnp.asarray(logits_blurred)
  if logits_clean.shape != logits_blurred.shape or logits_clean.ndim < 1:
    raise ValueError(f"logits_clean and logits_blurred must have one shape (..., classes), got "
                     f"{logits_clean.shape} and {logits_blurred.shape}")
  log_p = jax.nn.log_softmax(logits_clean, axis=-1)
  log_q = jax.nn.log_softmax(logits_blurred, axis=-1)
  log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
  kl = lambda log_a: jnp.sum(jnp.exp(log_a) * (log_a - log_m), axis=-1)
  return jnp.mean(0.5 * kl(log_p) + 0.5 * kl(log_q))



def supervised_loss(logits, labels, consistency_weight=0.0, label_smoothing=0.0):
  """Mean cross-entropy, plus the weighted blur-consistency term when there are two views.

  With `consistency_weight` > 0, `logits` stacks the predictions on the training batch (clean
  unless blur or noise augmentation is on) and on its always-blurred view, `(2B, classes)`: the
  cross-entropy averages over both views and the Jensen-Shannon divergence between them is
  added. Returns `(loss, per-example cross-entropy, logits)` of the first view, for metrics.
  """
  if consistency_weight <= 0:
    per_example = cross_entropy(logits, labels, label_smoothing)
    return per_example.mean(), per_example, logits
  per_example = cross_entropy(logits, jnp.concatenate([labels, labels]), label_smoothing)
  first, second = jnp.split(logits, 2)
  loss = per_example.mean() + consistency_weight * consistency_loss(first, second)
  return loss, per_example[:len(labels)], first
