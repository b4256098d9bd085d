"""Where the fast net's train step goes on XLA:CPU: each conv's forward, input and weight gradient.

  python benchmarks/conv_bench.py [--batch_size 128] [--single_thread 1] [--rounds 3]

For every 3x3 conv of the fast CIFAR-10 net (`configs/cifar10_fast.py`, widths 64/128/128) it
times, at one batch size, the forward conv and XLA's two gradients (`jax.vjp` with respect to
the input and to the kernel), each jitted alone on device-resident arrays, and beside them a
hand-written kernel gradient measured in the same run: nine matmuls of shifted input slices
with the output gradient (the candidate for a custom VJP). `--single_thread 1` (default) runs
as one of the recipe's split devices does (`config.cpu_devices`: one XLA:CPU thread); pin the
process to one core (`taskset -c 0`) for a clean reading. Prints milliseconds, GFLOP/s and the
hand-written / XLA ratio; the totals row says what share of the conv time the kernel gradients
take.
"""
import argparse
import time

# (spatial size, input channels, output channels) of the net's convs on a 32x32 input: the
# whitening layer leaves 31x31x24; each group's second conv runs after its 2x2 max-pool.
LAYERS = ((31, 24, 64), (15, 64, 64), (15, 64, 128), (7, 128, 128), (7, 128, 128), (3, 128, 128))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--single_thread", type=int, default=1, choices=[0, 1])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  from blur_adv import parallel  # pylint: disable=g-import-not-at-top
  if args.single_thread:  # One split device's setting, before JAX creates its CPU backend.
    parallel.use_single_threaded_cpu_devices(1)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def shifted_matmul_kernel_grad(x, g):
    h, w, c = x.shape[1:]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    flat_g = g.reshape(-1, g.shape[-1])
    taps = [jax.lax.dot_general(padded[:, dy:dy + h, dx:dx + w].reshape(-1, c), flat_g,
                                (((0,), (0,)), ((), ())))
            for dy in range(3) for dx in range(3)]
    return jnp.stack(taps).reshape(3, 3, c, -1)

  def best_ms(fn, *arrays):
    jax.block_until_ready(fn(*arrays))
    times = []
    for _ in range(args.rounds):
      start = time.perf_counter()
      for _ in range(args.repeats):
        out = fn(*arrays)
      jax.block_until_ready(out)
      times.append((time.perf_counter() - start) / args.repeats * 1e3)
    return min(times)

  print(f"batch {args.batch_size}, {'one XLA:CPU thread' if args.single_thread else 'all cores'}")
  print("| layer | GFLOP | forward ms | input grad ms | kernel grad ms (XLA) | kernel grad ms "
        "(shifted matmuls) | shifted / XLA | forward GFLOP/s | kernel grad GFLOP/s (XLA) |")
  print("|---|---|---|---|---|---|---|---|---|")
  rng = np.random.default_rng(0)
  totals = np.zeros(4)
  for size, cin, cout in LAYERS:
    x = jnp.asarray(rng.random((args.batch_size, size, size, cin), np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.1)
    g = jnp.asarray(rng.standard_normal((args.batch_size, size, size, cout)).astype(np.float32))
    xla_kernel_grad = jax.jit(lambda x, w, g: jax.vjp(lambda k: conv(x, k), w)[1](g)[0])
    ours = jax.jit(shifted_matmul_kernel_grad)
    np.testing.assert_allclose(ours(x, g), xla_kernel_grad(x, w, g), rtol=2e-3, atol=2e-3)
    ms = np.array([
        best_ms(jax.jit(conv), x, w),
        best_ms(jax.jit(lambda x, w, g: jax.vjp(lambda y: conv(y, w), x)[1](g)[0]), x, w, g),
        best_ms(xla_kernel_grad, x, w, g),
        best_ms(ours, x, g)])
    totals += ms
    gflop = 2 * args.batch_size * size * size * 9 * cin * cout / 1e9
    print(f"| {size}x{size} {cin}->{cout} | {gflop:.2f} | {ms[0]:.1f} | {ms[1]:.1f} | "
          f"{ms[2]:.1f} | {ms[3]:.1f} | {ms[3] / ms[2]:.2f} | {gflop / ms[0] * 1e3:.0f} | "
          f"{gflop / ms[2] * 1e3:.0f} |", flush=True)
  print(f"| total | | {totals[0]:.0f} | {totals[1]:.0f} | {totals[2]:.0f} | {totals[3]:.0f} | "
        f"{totals[3] / totals[2]:.2f} | | |")
  print(f"XLA's kernel gradients: {100 * totals[2] / totals[:3].sum():.0f}% of the conv time "
        "(forward + both gradients).")


if __name__ == "__main__":
  main()
