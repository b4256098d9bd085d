"""Unconstrained parametrizations of the kernel families, for optimizers.

Fitting, attacks and adversaries all search over a family's parameters by gradient steps. They do
it on unconstrained vectors `raw (..., n)`; this module maps them to the family's valid parameters
(softplus for sizes, identity for angles) and on to kernels, so every caller treats the families
alike. `free_form` is included with its `size * size` logits as the parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv import kernels

# family -> ((parameter name, kind), ...) in the family function's argument order.
PARAMETERS = {
    "gaussian": (("sigma", "positive"),),
    "anisotropic_gaussian": (("sigma_u", "positive"), ("sigma_v", "positive"), ("angle", "angle")),
    "defocus": (("radius", "positive"),),
    "motion": (("length", "positive"), ("angle", "angle")),
    "box": (("width", "positive"),),
}
NAMES = tuple(PARAMETERS) + ("free_form",)


def _check_family(family):
  if family not in NAMES:
    raise ValueError(f"family must be one of {list(NAMES)}, got {family!r}")


def num_parameters(family, size):
  """Length of the raw vector (degrees of freedom of free-form: size^2 - 1)."""
  _check_family(family)
  return size * size if family == "free_form" else len(PARAMETERS[family])


def degrees_of_freedom(family, size):
  """Free parameters of the kernel, for information criteria (softmax loses one)."""
  return num_parameters(family, size) - (family == "free_form")


def to_params(family, raw):
  """Raw `(..., n)` -> tuple of `(...)` valid parameters (free-form: the logits themselves)."""
  _check_family(family)
  if family == "free_form":
    return (raw,)
  return tuple(jax.nn.softplus(raw[..., i]) if kind == "positive" else raw[..., i]
               for i, (_, kind) in enumerate(PARAMETERS[family]))


def to_raw(family, params):
  """Inverse of `to_params` for concrete parametric values (e.g. initial guesses)."""
  _check_family(family)
  if family == "free_form":
    return jnp.asarray(params[0], jnp.float32)
  columns = []
  for value, (_, kind) in zip(params, PARAMETERS[family]):
    value = np.asarray(value, np.float64)
    # softplus^-1(v) = log(expm1(v)), written to stay finite for large v.
    columns.append(value + np.log(-np.expm1(-value)) if kind == "positive" else value)
  return jnp.asarray(np.stack(np.broadcast_arrays(*columns), axis=-1), jnp.float32)


def to_kernels(family, size, raw):
  """Raw `(..., n)` -> kernels `(..., size, size)`."""
  params = to_params(family, raw)
  if family == "free_form":
    return kernels.free_form(params[0].reshape(params[0].shape[:-1] + (size, size)))
  return kernels.FAMILIES[family][0](size, *params)


def initial_raw(family, size, count):
  """`count` spread-out starting points `(count, n)` covering mild to strong blur at this size."""
  _check_family(family)
  if family == "free_form":
    return jnp.zeros((count, size * size), jnp.float32)  # the uniform (box) kernel
  fraction = (np.arange(count) + 0.5) / count
  scale = size / 2.0  # the largest blur the window can hold
  params = []
  for i, (_, kind) in enumerate(PARAMETERS[family]):
    # Different parameters cycle at different rates so restarts cover their combinations.
    cycled = np.roll(fraction, i * max(1, count // 3))
    if kind == "positive":
      params.append(0.6 + cycled * scale)
    else:
      params.append(cycled * np.pi)
  return to_raw(family, params)


def canonical(family, params):
  """One representative of parameters that give the same kernel, as a name -> values dict.

  Angles of these families are defined modulo pi (a line or an ellipse turned half-way round is
  the same kernel), and an ellipse with sigma_u < sigma_v is the one with the sigmas swapped and
  the angle turned by pi / 2; the representative has angle in [0, pi) and sigma_u >= sigma_v.
  """
  _check_family(family)
  values = dict(zip((name for name, _ in PARAMETERS[family]), map(np.asarray, params)))
  if family == "anisotropic_gaussian":
    swap = values["sigma_u"] < values["sigma_v"]
    values["sigma_u"], values["sigma_v"] = (np.where(swap, values["sigma_v"], values["sigma_u"]),
                                            np.where(swap, values["sigma_u"], values["sigma_v"]))
    values["angle"] = values["angle"] + swap * np.pi / 2
  if "angle" in values:
    values["angle"] = np.mod(values["angle"], np.pi)
  return values
