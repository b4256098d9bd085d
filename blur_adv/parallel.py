"""Data parallelism: one per-device step, run by `jax.pmap` or `jax.jit(jax.shard_map(...))`.

Steps are written per device and reduce over the named axis `DATA_AXIS`
themselves (`lax.pmean` of gradients, `lax.psum` of metric sums, BatchNorm
moments via `axis_name`), so both wrappers compute the same global-batch
update as a single device would. The state is replicated; the batch is split
along its leading axis. With several processes each one feeds only its local
rows and the collectives span all hosts.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from blur_adv import config_checks

DATA_AXIS = "data"
MODES = ("pmap", "shard_map")


def check_config(config):
  if config.parallelism not in MODES:
    raise config_checks.unknown_name("parallelism", "parallelism", config.parallelism, MODES)


config_checks.register_fields("parallelism", validator=check_config)
config_checks.register_fields(
    "cpu_devices",
    validator=lambda config: config_checks.check_int("cpu_devices", config.cpu_devices, 0))


def use_single_threaded_cpu_devices(count: int):
  """Splits the host CPU into `count` single-threaded XLA devices; 0 keeps XLA's default.

  XLA:CPU spreads one device's convolutions over all cores poorly: on 2 cores the fast
  CIFAR-10 recipe's train step measured 1.3x faster as two single-threaded devices (data
  parallel, BatchNorm moments synchronized, so the same update) than as one two-threaded one
  (`benchmarks/model_bench.py --cpu_devices`). Only the CPU platform is affected, so a GPU or
  TPU run ignores it. JAX reads both settings when it creates its backends: call this first.
  Give such a process its cores to itself: with another such process on the same 2 cores, a
  run went at 0.37 steps/s against 0.93 alone (each device waits for its peer at every
  collective, and the peer may be descheduled).
  """
  config_checks.check_int("cpu_devices", count, 0)
  if not count:
    return
  jax.config.update("jax_num_cpu_devices", count)  # Raises once the backends exist.
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_multi_thread_eigen" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()


class DataParallel:
  """Places states and batches on devices and wraps per-device steps for one `mode`."""

  def __init__(self, mode: str, num_devices: int | None = None):
    if mode not in MODES:
      raise ValueError(f"Unknown config.parallelism={mode!r}; known: {', '.join(MODES)}.")
    devices = jax.devices()
    if num_devices:
      if jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError("config.num_devices must be unset with several processes.")
      if num_devices > len(devices):
        raise ValueError(f"config.num_devices={num_devices} but only {len(devices)} devices.")
      devices = devices[:num_devices]
    self.mode = mode
    self.devices = devices
    self.local_devices = [d for d in devices if d.process_index == jax.process_index()]
    if mode == "shard_map":
      self.mesh = jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                                axis_types=(jax.sharding.AxisType.Explicit,))
      self._replicated = NamedSharding(self.mesh, P())
      self._sharded = NamedSharding(self.mesh, P(DATA_AXIS))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  # ---------------------------------------------------------------- placement

  def replicate(self, tree: Any) -> Any:
    """Host pytree (same on every process) -> replicated device pytree."""
    if self.mode == "pmap":
      n = len(self.local_devices)
      mesh = jax.sharding.Mesh(np.array(self.local_devices), ("replica",))
      sharding = NamedSharding(mesh, P("replica"))
      return jax.tree.map(
          lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding),
          tree)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(
            np.shape(x), self._replicated, lambda index, x=np.asarray(x): x[index]), tree)

  def unreplicate(self, tree: Any) -> Any:
    """Replicated device pytree -> one host (numpy) copy."""
    if self.mode == "pmap":
      return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)).reshape(x.shape[1:]), tree)
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

  def shard_batch(self, local_batch: Any) -> Any:
    """This process's rows of the global batch -> device batch split over the data axis."""
    if self.mode == "pmap":
      n = len(self.local_devices)
      return jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), local_batch)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self._sharded, x), local_batch)

  # ---------------------------------------------------------------- steps

  def wrap_train_step(self, step: Callable) -> Callable:
    """Per-device `(state, batch, rng) -> (state, metrics)` -> data-parallel step."""
    return self._wrap(step, batch_argnums=(1,), num_args=3, donate=True)

  def wrap_eval_step(self, step: Callable) -> Callable:
    """Per-device `(state, batch) -> metrics` -> data-parallel step."""
    return self._wrap(step, batch_argnums=(1,), num_args=2, donate=False)

  def _wrap(self, step, batch_argnums, num_args, donate):
    donate_argnums = (0,) if donate else ()
    if self.mode == "pmap":
      in_axes = tuple(0 if i in batch_argnums or i == 0 else None for i in range(num_args))
      devices = self.devices if jax.process_count() == 1 else None
      return jax.pmap(step, axis_name=DATA_AXIS, in_axes=in_axes, devices=devices,
                      donate_argnums=donate_argnums)
    in_specs = tuple(P(DATA_AXIS) if i in batch_argnums else P() for i in range(num_args))
    # check_vma=False keeps per-device gradients local, so the step's explicit
    # pmean (not an implicit psum from the transpose) does the reduction, as under pmap.
    mapped = jax.shard_map(step, mesh=self.mesh, in_specs=in_specs, out_specs=P(),
                           check_vma=False)
    return jax.jit(mapped, donate_argnums=donate_argnums)

  def put_rng(self, rng: Any) -> Any:
    """An RNG key passed unreplicated to pmap (in_axes=None) or replicated for shard_map."""
    if self.mode == "pmap":
      return rng
    return self.replicate(np.asarray(rng))
