"""What every trainer shares: the train state, metric collections, the trainer interface.

A trainer creates the train state and provides per-device steps that `parallel.py` runs under
`jax.pmap` or `jax.shard_map`. Steps are pure functions `(state, batch, rng) -> (state, metrics)`
that average gradients with an explicit `lax.pmean` over the data axis and return metrics already
summed over it. Trainers are picked by `config.trainer` from `TRAINERS`.
"""

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
from clu import metrics
from flax.training import train_state
from jax import lax

from blur_adv import optim
from blur_adv.parallel import DATA_AXIS
from blur_adv.registry import Registry
from blur_adv.trainers.losses import cross_entropy


class TrainState(train_state.TrainState):
  """Classifier state plus BatchNorm statistics and `extra` pytrees for richer trainers.

  `extra` is checkpointed with the rest (e.g. an adversary's params and
  optimizer state); subclasses may add fields as well. With `lookahead` (`optim.lookahead`),
  every `apply_gradients` ends with its sync; its slow copy is one more entry of `extra`, so
  states without it keep their checkpoint layout.
  """
  batch_stats: Any = None
  extra: Any = flax.struct.field(default_factory=dict)
  lookahead: optim.Lookahead | None = flax.struct.field(pytree_node=False, default=None)

  @classmethod
  def create(cls, *, params, batch_stats=None, extra=None, lookahead=None, **kwargs):
    extra = dict(extra or {})
    if lookahead is not None:
      extra = lookahead.start(extra, params, batch_stats)
    return super().create(params=params, batch_stats=batch_stats, extra=extra,
                          lookahead=lookahead, **kwargs)

  def apply_gradients(self, *, grads, **kwargs):
    state = super().apply_gradients(grads=grads, **kwargs)
    return state if self.lookahead is None else self.lookahead.sync(state)

  def with_new_parameters(self, params, batch_stats=None):
    """This state with other starting parameters (e.g. fine-tuning): a fresh optimizer state
    and, with Lookahead, a slow copy that starts from them."""
    batch_stats = self.batch_stats if batch_stats is None else batch_stats
    extra = self.extra
    if self.lookahead is not None:
      extra = self.lookahead.start(extra, params, batch_stats)
    return self.replace(params=params, batch_stats=batch_stats, opt_state=self.tx.init(params),
                        extra=extra)


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
  # (rng, images) -> state; `images` is a sample of training images (data-dependent init).
  init_state: Callable[[jax.Array, jax.Array], TrainState]
  train_step: Callable[..., tuple[TrainState, metrics.Collection]]  # (state, batch, rng)
  eval_step: Callable[..., metrics.Collection]  # (state, batch)
  # Trainers with a blur adversary: (state, images, labels, rng) -> (admissible kernels
  # (B, k, k), mean family mixture (F,) or None), on one device; see trainers/strength.py.
  adversary: Callable[..., Any] | None = None


TRAINERS: Registry[Callable[..., Trainer]] = Registry("trainer", field="trainer")


def sum_over_devices(collection: metrics.Collection) -> metrics.Collection:
  """Sums CLU metric totals and counts over the data axis, giving global-batch metrics."""
  return jax.tree.map(lambda x: lax.psum(x, DATA_AXIS), collection)


def classifier_eval_step(state: TrainState, batch) -> EvalMetrics:
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = state.apply_fn(variables, batch["image"], train=False)
  return sum_over_devices(EvalMetrics.single_from_model_output(
      loss=cross_entropy(logits, batch["label"]),
      accuracy=(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32),
      mask=batch["mask"]))
