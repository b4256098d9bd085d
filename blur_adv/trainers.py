"""Train states and per-device train/eval steps, picked by `config.trainer`.

A trainer is the unit later issues extend (e.g. "adversarial", which trains
an adversary jointly with the classifier): it creates the train state and
provides per-device steps that `parallel.py` runs under `jax.pmap` or
`jax.shard_map`. Steps are pure functions `(state, batch, rng) -> (state,
metrics)` that average gradients with an explicit `lax.pmean` over the data
axis and return metrics already summed over it.
"""

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from clu import metrics
from flax.training import train_state
from jax import lax

from blur_adv import deblur, defense
from blur_adv.parallel import DATA_AXIS
from blur_adv.registry import Registry


class TrainState(train_state.TrainState):
  """Classifier state plus BatchNorm statistics and `extra` pytrees for richer trainers.

  `extra` is checkpointed with the rest (e.g. an adversary's params and
  optimizer state); subclasses may add fields as well.
  """
  batch_stats: Any = None
  extra: Any = flax.struct.field(default_factory=dict)


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")
  grad_norm: metrics.Average.from_output("grad_norm")


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("accuracy")


@dataclasses.dataclass(frozen=True)
class Trainer:
  """What the training loop needs from a trainer; all steps are per-device."""
  init_state: Callable[[jax.Array, tuple[int, ...]], TrainState]  # (rng, image shape) -> state
  train_step: Callable[..., tuple[TrainState, metrics.Collection]]  # (state, batch, rng)
  eval_step: Callable[..., metrics.Collection]  # (state, batch)
  metrics_cls: type[metrics.Collection] = TrainMetrics


TRAINERS: Registry[Callable[..., Trainer]] = Registry("trainer")


def sum_over_devices(collection: metrics.Collection) -> metrics.Collection:
  """Sums CLU metric totals and counts over the data axis, giving global-batch metrics."""
  return jax.tree.map(lambda x: lax.psum(x, DATA_AXIS), collection)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def classifier_eval_step(state: TrainState, batch) -> EvalMetrics:
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = state.apply_fn(variables, batch["image"], train=False)
  return sum_over_devices(EvalMetrics.single_from_model_output(
      loss=cross_entropy(logits, batch["label"]),
      accuracy=(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32),
      mask=batch["mask"]))


def supervised_loss(logits, labels, consistency_weight=0.0, label_smoothing=0.0):
  """Mean cross-entropy, plus the weighted blur-consistency term when there are two views.

  With `consistency_weight` > 0, `logits` stacks the predictions on the training batch (clean
  unless blur augmentation is on) and on its always-blurred view, `(2B, classes)`: the cross-entropy averages over both views and the
  Jensen-Shannon divergence between them is added. Returns `(loss, per-example cross-entropy,
  logits)` of the first view, for metrics.
  """
  if consistency_weight <= 0:
    per_example = cross_entropy(logits, labels, label_smoothing)
    return per_example.mean(), per_example, logits
  per_example = cross_entropy(logits, jnp.concatenate([labels, labels]), label_smoothing)
  first, second = jnp.split(logits, 2)
  loss = per_example.mean() + consistency_weight * deblur.consistency_loss(first, second)
  return loss, per_example[:len(labels)], first


@TRAINERS.register("standard")
def standard_trainer(config, num_classes: int, total_steps: int, steps_per_epoch: int) -> Trainer:
  """Supervised training with softmax cross-entropy, plus the `config.defense` options."""
  model = defense.create_model(config, num_classes)
  tx = defense.create_optimizer(config, total_steps, steps_per_epoch)
  consistency_weight = defense.settings(config).consistency_weight

  def init_state(rng, image_shape):
    variables = model.init(rng, jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}))

  def train_step(state: TrainState, batch, rng):
    keys = defense.example_keys(rng, batch["image"].shape[0])
    images = defense.augment_images(config, keys, batch["image"])
    if consistency_weight > 0:  # One pass over both views; BatchNorm sees them together.
      images = jnp.concatenate([images, defense.blurred_view(config, keys, batch["image"])])

    def loss_fn(params):
      logits, updates = state.apply_fn(
          {"params": params, "batch_stats": state.batch_stats}, images, train=True,
          mutable=["batch_stats"])
      loss, per_example, logits = supervised_loss(logits, batch["label"], consistency_weight,
                                                  config.label_smoothing)
      return loss, (per_example, logits, updates["batch_stats"])

    grad_fn = jax.grad(loss_fn, has_aux=True)
    grads, (per_example, logits, batch_stats) = grad_fn(state.params)
    # Equal local batches, so the mean of local means is the global-batch gradient.
    grads = lax.pmean(grads, DATA_AXIS)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    step_metrics = TrainMetrics.single_from_model_output(
        loss=per_example,
        accuracy=(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32),
        grad_norm=optax.tree.norm(grads)[None])  # Same on all devices.
    return state, sum_over_devices(step_metrics)

  return Trainer(init_state=init_state, train_step=train_step, eval_step=classifier_eval_step)
