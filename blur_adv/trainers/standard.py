"""The standard trainer: supervised training with softmax cross-entropy, plus `config.defense`."""

import jax
import jax.numpy as jnp
import optax
from jax import lax

from blur_adv import optim
from blur_adv.defense import augmentation, front_end
from blur_adv.defense import config as defense_config
from blur_adv.models.test_time_augmentation import with_test_time_augmentation
from blur_adv.parallel import DATA_AXIS
from blur_adv.trainers.base import (TRAINERS, Trainer, TrainMetrics, TrainState,
                                    classifier_eval_step, sum_over_devices)
from blur_adv.trainers.losses import supervised_loss


@TRAINERS.register("standard")
def standard_trainer(config, num_classes: int, total_steps: int, steps_per_epoch: int) -> Trainer:
  """Supervised training with softmax cross-entropy, plus the `config.defense` options."""
  model = front_end.create_model(config, num_classes)
  tx = front_end.create_optimizer(config, total_steps, steps_per_epoch)
  consistency_weight = defense_config.settings(config).consistency_weight

  def init_state(rng, images):
    variables = model.init(rng, images, train=False)
    apply_fn = with_test_time_augmentation(model.apply, config.get("tta", "none"))
    return TrainState.create(apply_fn=apply_fn, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}),
                             lookahead=optim.lookahead(config, total_steps))

  def train_step(state: TrainState, batch, rng):
    keys = augmentation.example_keys(rng, batch["image"].shape[0])
    images = augmentation.add_noise(config, keys,
                                    augmentation.augment_images(config, keys, batch["image"]))
    if consistency_weight > 0:  # One pass over both views; BatchNorm sees them together.
      images = jnp.concatenate([images, augmentation.blurred_view(config, keys, batch["image"])])

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
