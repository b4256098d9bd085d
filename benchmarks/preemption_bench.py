"""Cost of the per-step preemption check on 2 CPU processes: JAX's preemption sync point vs. the
all-gather of a SIGTERM flag it replaced, alone and inside a loop of asynchronously dispatched
steps.

  python benchmarks/preemption_bench.py [--steps=200 --rounds=5 --size=256]

Starts two processes joined by `jax.distributed` on localhost (gloo collectives, as the tests
do). Each round runs the same loops in an interleaved order so other load on the machine hits
all rows alike; process 0 prints the median over rounds, in microseconds per check and in steps
per second of a loop whose step is a jitted matmul chain (dispatched asynchronously; a check
that waits on the other process makes the host wait for the devices too), with ratios to the
loop with no check.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time


def _checks(kind):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if kind == "none":
    return lambda step: False
  if kind == "allgather":  # The previous PreemptionWatcher.should_stop.
    return lambda step: bool(np.any(multihost_utils.process_allgather(np.asarray(False))))
  return multihost_utils.reached_preemption_sync_point


def _worker(args):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{args.port}", 2, args.process_id)
  step_fn = jax.jit(lambda x: jnp.tanh(x @ x) @ x / args.size)
  x = jnp.ones((args.size, args.size)) / args.size
  kinds = ("none", "allgather", "sync_point")
  alone = {k: [] for k in kinds}
  looped = {k: [] for k in kinds}
  step_id = 0  # The sync point wants increasing step ids on every process.
  for r in range(args.rounds + 1):  # Round 0 warms up (compiles) and is not reported.
    for kind in kinds[r % 3:] + kinds[:r % 3]:
      check = _checks(kind)
      start = time.perf_counter()
      for _ in range(args.steps):
        step_id += 1
        check(step_id)
      alone[kind].append((time.perf_counter() - start) / args.steps * 1e6)
      y = x
      start = time.perf_counter()
      for _ in range(args.steps):
        step_id += 1
        y = step_fn(y)
        check(step_id)
      y.block_until_ready()
      looped[kind].append(args.steps / (time.perf_counter() - start))
  if args.process_id == 0:
    print(f"2 processes, {args.steps} steps x {args.rounds} rounds, {args.size}x{args.size} "
          "matmul steps; medians (timings inflated by other load on the cores):")
    print(f"{'check':<12}{'us/check alone':>16}{'steps/s in loop':>18}{'ratio to none':>15}")
    base = statistics.median(looped["none"][1:])
    for kind in kinds:
      speed = statistics.median(looped[kind][1:])
      print(f"{kind:<12}{statistics.median(alone[kind][1:]):>16.1f}{speed:>18.1f}"
            f"{speed / base:>15.2f}")
  jax.distributed.shutdown()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--process_id", type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.process_id is not None:
    return _worker(args)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, __file__] + sys.argv[1:] +
                            [f"--process_id={i}", f"--port={port}"], env=env)
           for i in range(2)]
  return max(p.wait() for p in procs)


if __name__ == "__main__":
  sys.exit(main())
