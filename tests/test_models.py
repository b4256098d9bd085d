"""Registered classifiers: shapes, BatchNorm modes, name errors."""
import jax
import jax.numpy as jnp
import pytest

# components registers every model, including those of lazily imported modules.
from blur_adv import components, models  # pylint: disable=unused-import

SMALL = {  # Shrunk hyper-parameters so every architecture traces in a second.
    "small_cnn": {"width": 4},
    "resnet20": {"width": 4},
    "resnet56": {"width": 2},
    "cifar_resnet": {"depth": 8, "width": 4},
    "preact_resnet18": {"width": 4},
    "wide_resnet": {"depth": 10, "widen_factor": 1},
    "wrn28_10": {"widen_factor": 1},
    "whitened_convnet": {"widths": (4, 8, 8)},
    "resnet50": {"width": 2, "stage_sizes": (1, 1, 1, 1)},
}
IMAGES = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_shapes_in_eval_and_train_mode(name):
  assert set(SMALL) == set(models.MODELS.names())
  model = models.create_model(name, num_classes=7, **SMALL[name])
  # Abstract evaluation checks the architecture without compiling deep nets.
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(1), IMAGES)
  assert set(variables) == {"params", "batch_stats"}
  logits = jax.eval_shape(model.apply, variables, IMAGES)
  assert logits.shape == (2, 7)
  _, updates = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, IMAGES)
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])


@pytest.mark.parametrize("name", ["small_cnn"])
def test_batchnorm_uses_batch_statistics_only_in_training(name):
  model = models.create_model(name, num_classes=3, **SMALL[name])
  images = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(1), images)
  logits = model.apply(variables, images)
  assert jnp.all(jnp.isfinite(logits))
  _, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"],
                         updates["batch_stats"])
  assert all(jax.tree.leaves(changed))
  # Eval mode ignores the batch: one example gives the same logits alone or in a batch.
  single = model.apply(variables, images[:1])
  assert jnp.allclose(single, logits[:1], atol=1e-5)


def test_unknown_model_and_bad_kwargs_name_the_field():
  with pytest.raises(ValueError, match="config.model='resnet21'.*resnet20"):
    models.create_model("resnet21", 10)
  with pytest.raises(ValueError, match="config.model_kwargs"):
    models.create_model("resnet20", 10, widht=3)


def test_resnet50_has_torchvisions_parameter_count_and_a_bfloat16_option():
  model = models.create_model("resnet50", 1000)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
  # torchvision.models.resnet50: 25,557,032 parameters (BatchNorm running stats excluded).
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == 25_557_032
  tiny = models.create_model("resnet50", 5, width=4, stage_sizes=(1, 1, 1, 1), dtype="bfloat16")
  x = jnp.zeros((2, 32, 32, 3))
  tiny_vars = tiny.init(jax.random.PRNGKey(0), x)
  assert tiny.apply(tiny_vars, x).dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(tiny_vars["params"]))
