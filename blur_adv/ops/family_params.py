"""One unconstrained parametrization of every kernel family, shared by attacks, adversary and fit.

Anything that searches a family by gradient steps works on unconstrained variables `raw` of shape
`(B,) + raw_shape(family, size)`. They map onto bounded parameter ranges sized to the kernel window
(so a kernel never outgrows it and a raw step has a fixed scale): sizes through a scaled sigmoid,
angles linearly (one raw unit = 180 degrees), camera-shake points through a scaled tanh, and the
free-form kernel is the softmax of its raw logits.
"""

import jax
import jax.numpy as jnp
import numpy as np

from blur_adv.ops import families
from blur_adv.ops import kernels as kernels_lib

# Control points of a searched camera-shake path.
PATH_POINTS = 4

# How far one attack step moves a family's raw variables, relative to the attack's step size.
# A sign step of 0.1 moves a bounded parameter by a few percent of its range but a free-form
# logit by only 0.1 (the kernel's weights by ~10%), so free-form searches barely moved: on a
# CIFAR-10 classifier (fast recipe, 256 training images, budget 0.1) free-form's 8-step gain was
# 0.44 at step 0.3 and 0.58 at step 1.0 (0.54 at 3.0), while the camera-shake path's was best at
# 0.1-0.3 and fell at 1.0. Free-form logits therefore take 10x the step.
STEP_SCALE = {"free_form": 10.0}


def step_scale(family) -> float:
  check_family(family)
  return STEP_SCALE.get(family, 1.0)


def check_family(family):
  if family not in families.FAMILIES:
    raise ValueError(f"family must be one of {families.FAMILIES}, got {family!r}")


def check_size(size):
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3 or size % 2 == 0:
    raise ValueError(f"size must be an odd int >= 3, got {size!r}")


def upper_bound(name, size):
  """Largest value of a size-like parameter in a `size` window."""
  half = size // 2
  return {
      "sigma": max(half / 2.0, 0.5),  # +-2 sigma fits in the window
      "sigma_u": max(half / 2.0, 0.5),
      "sigma_v": max(half / 2.0, 0.5),
      "radius": float(max(half, 1)),
      "length": float(max(2 * half, 1)),
      "width": float(size),
  }[name]


def _parameter(name, raw, size):
  if name == "angle":
    return np.pi * raw
  return upper_bound(name, size) * jax.nn.sigmoid(raw)


def raw_shape(family, size):
  """Shape of one example's unconstrained variables."""
  check_family(family)
  if family == "free_form":
    return (size, size)
  if family == "motion_path":
    return (PATH_POINTS, 2)
  return (len(kernels_lib.PARAMETRIC_FAMILIES[family][1]),)


def degrees_of_freedom(family, size):
  """Free parameters of a kernel, for information criteria (a softmax loses one)."""
  return int(np.prod(raw_shape(family, size))) - (family == "free_form")


def to_params(family, raw, size):
  """Raw `(B,) + raw_shape` -> {parameter name: values} (path points, or free-form logits)."""
  check_family(family)
  if family == "free_form":
    return {"logits": raw}
  if family == "motion_path":
    return {"points": (size // 2) * jnp.tanh(raw)}
  names = kernels_lib.PARAMETRIC_FAMILIES[family][1]
  return {name: _parameter(name, raw[..., i], size) for i, name in enumerate(names)}


def raw_to_kernels(family, raw, size):
  """Raw `(B,) + raw_shape` -> kernels `(B, size, size)`."""
  params = to_params(family, raw, size)
  if family == "free_form":
    return kernels_lib.free_form(params["logits"])
  if family == "motion_path":
    return kernels_lib.motion_path(size, params["points"])
  return kernels_lib.PARAMETRIC_FAMILIES[family][0](size, *params.values())


def random_raw(key, family, batch, size):
  """Random starting points: standard normal raw variables (spread over each range)."""
  return jax.random.normal(key, (batch,) + raw_shape(family, size))


def random_kernels(key, family, batch, size):
  """Random kernels of a family, drawn like the attacks' starting points."""
  return raw_to_kernels(family, random_raw(key, family, batch, size), size)


def canonical(family, params):
  """One representative of parameters that give the same kernel (numpy values).

  Angles of these families are defined modulo pi (a line or an ellipse turned half-way round is
  the same kernel), and an ellipse with sigma_u < sigma_v is the one with the sigmas swapped and
  the angle turned by pi / 2; the representative has angle in [0, pi) and sigma_u >= sigma_v.
  """
  values = {name: np.asarray(v) for name, v in params.items()}
  if family == "anisotropic_gaussian":
    swap = values["sigma_u"] < values["sigma_v"]
    values["sigma_u"], values["sigma_v"] = (np.where(swap, values["sigma_v"], values["sigma_u"]),
                                            np.where(swap, values["sigma_u"], values["sigma_v"]))
    values["angle"] = values["angle"] + swap * np.pi / 2
  if "angle" in values:
    values["angle"] = np.mod(values["angle"], np.pi)
  return values
