"""Images/s of `blur_adv.blur.blur` against PyTorch grouped conv2d and a naive `vmap(lax.conv)`.

Run: `python benchmarks/blur_bench.py` (needs the `bench` extra: `pip install torch==2.13.0`).
On a GPU/TPU (or to check `auto`'s pure-JAX rule anywhere), `python benchmarks/blur_bench.py
--backend=gpu` (or tpu, cpu --strategies) times each pure-JAX strategy, forced, on every shape
(direct = grouped `lax.conv`, fft, shift, separable), including separable blur followed by a
reduction, and prints what `auto` picks next to the fastest.

What is timed, identically for every implementation, on per-example kernels (one per image):
  forward:          out = blur(x, K) with reflect padding, x (B, H, W, 3) float32.
  forward+gradient: value and gradient w.r.t. the kernels of sum(out * w), w a fixed random
                    tensor (the images are not differentiated).
Each call is jit-compiled (JAX) or eager (PyTorch, forward under no_grad), warmed up once, and
`block_until_ready`-ed; the figure is the best of several samples, each the mean of enough
back-to-back calls to fill MIN_SAMPLE_S. Best, not median: on this VM the median of 100 calls of
one function moved by up to 4x from one batch to the next (background kernel work), and
interference only ever slows a sample down. Implementations are timed one after another, with a pause
between them: interleaving them call by call (tried first) let each one's idle threads (torch's
OpenMP threads spin after every call by default) slow down the next, which moved cells by 2-3x.
So the machine must be quiet (nothing else running) for the table to mean anything.

blur_adv is timed twice: on general kernels (free-form random) with `method="auto"`, and on a
separable family (per-example Gaussians given as `Separable` 1-D factors; its gradient is w.r.t.
those factors, which is what the adversary differentiates for that family). The peers always get
the dense kernels. "first call" is the compile+run time of blur_adv's first forward and first
forward+gradient call for the shape.
"""

import argparse
import os
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from blur_adv.ops import blur as blur_lib
from blur_adv.ops import blur_strategies
from blur_adv.ops import kernels as kernels_lib
from blur_adv.ops import native as native_lib

SHAPES = [(256, 32, 5), (256, 32, 9), (256, 32, 15), (256, 32, 31), (32, 224, 15), (32, 224, 31)]
TORCH_THREADS = 2
# A call slower than SLOW_CALL_S is timed once after warm-up and its cell marked approximate
# ("~"); one slower than TOO_SLOW_S only by its warm-up call, compile included (an
# under-estimate). The naive vmap's gradient is skipped ("-") when its forward alone is that
# slow (224x224, k=31: over a minute a call); it is never near the best peer there.
SLOW_CALL_S = 4.0
TOO_SLOW_S = 15.0
MIN_SAMPLE_S = 0.1
SETTLE_S = 0.5


def _jax_impls(method):
  """(forward, forward+gradient) jitted callables of blur_adv for kernel inputs of any pytree."""
  def forward(x, kernels):
    return blur_lib.blur(x, kernels, padding="reflect", method=method)

  def loss(kernels, x, w):
    return jnp.sum(forward(x, kernels) * w)

  return jax.jit(forward), jax.jit(jax.value_and_grad(loss))


def _naive_impls():
  """`vmap` over examples of a per-channel grouped `lax.conv` on reflect-padded images."""
  def one(x, kernel):
    half = kernel.shape[-1] // 2
    padded = jnp.pad(x, ((half, half), (half, half), (0, 0)), mode="reflect")
    channels = x.shape[-1]
    rhs = jnp.broadcast_to(kernel[::-1, ::-1, None, None], kernel.shape + (1, channels))
    return lax.conv_general_dilated(padded[None], rhs, (1, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    feature_group_count=channels)[0]

  forward = jax.vmap(one)
  loss = lambda kernels, x, w: jnp.sum(forward(x, kernels) * w)
  return jax.jit(forward), jax.jit(jax.value_and_grad(loss))


def _torch_impls(torch):
  """Grouped conv2d, one group per (example, channel), on reflect-padded NCHW images."""
  functional = torch.nn.functional

  def forward(x, kernels):
    batch, channels, height, width = x.shape
    half = kernels.shape[-1] // 2
    padded = functional.pad(x.reshape(1, batch * channels, height, width), (half,) * 4,
                            mode="reflect")
    weight = kernels.flip(-1, -2).repeat_interleave(channels, dim=0)[:, None]
    return functional.conv2d(padded, weight, groups=batch * channels).reshape(x.shape)

  def forward_no_grad(x, kernels):
    with torch.no_grad():
      return forward(x, kernels)

  def value_and_grad(kernels, x, w):
    kernels = kernels.detach().requires_grad_(True)
    value = torch.sum(forward(x, kernels) * w)
    value.backward()
    return value, kernels.grad

  return forward_no_grad, value_and_grad


def _sync(result):
  jax.block_until_ready(result)  # no-op on torch tensors: torch CPU ops are synchronous
  return result


class Timer:
  """The best of `rounds` samples per callable, one callable after another.

  A sample of a fast call is the mean of enough back-to-back calls to fill MIN_SAMPLE_S, so that
  scheduler jitter of a millisecond or so does not decide a cell.
  """

  def __init__(self):
    self.calls, self.times, self.first, self.repeats = {}, {}, {}, {}

  def add(self, name, fn, *args):
    start = time.perf_counter()
    _sync(fn(*args))
    self.first[name] = time.perf_counter() - start
    start = time.perf_counter()
    _sync(fn(*args))
    self.repeats[name] = max(1, int(MIN_SAMPLE_S / (time.perf_counter() - start)))
    self.calls[name] = (fn, args)
    self.times[name] = []

  def run(self, rounds):
    for name, (fn, args) in self.calls.items():
      time.sleep(SETTLE_S)  # let the previous implementation's idle threads stop spinning
      for round_index in range(rounds):
        if (round_index and self.first[name] > SLOW_CALL_S) or self.first[name] > TOO_SLOW_S:
          continue
        start = time.perf_counter()
        for _ in range(self.repeats[name]):
          _sync(fn(*args))
        self.times[name].append((time.perf_counter() - start) / self.repeats[name])

  def per_second(self, name, batch):
    return batch / min(self.times[name] or [self.first[name]])

  def approximate(self, name):
    return self.first[name] > SLOW_CALL_S


def _inputs(batch, size, k, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((batch, size, size, 3), dtype=np.float32)
  w = rng.standard_normal((batch, size, size, 3), dtype=np.float32)
  general = rng.random((batch, k, k), dtype=np.float32)
  general /= general.sum(axis=(1, 2), keepdims=True)
  sigma = rng.uniform(0.5, k / 4, size=batch).astype(np.float32)
  column, row = kernels_lib.gaussian_factors(k, sigma)
  return x, w, general, blur_lib.Separable(column, row)


def bench_shape(batch, size, k, torch, rounds):
  x, w, general, separable = _inputs(batch, size, k)
  dense_separable = np.array(blur_strategies.dense(separable))  # writable, for torch
  torch_fwd, torch_vg = _torch_impls(torch)
  naive_fwd, naive_vg = _naive_impls()
  ours_fwd, ours_vg = _jax_impls("auto")
  xt, wt = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))) for a in (x, w))
  kt = torch.from_numpy(general)
  xj, wj, kj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(general)

  timer = Timer()
  timer.add("ours fwd", ours_fwd, xj, kj)
  timer.add("ours f+g", ours_vg, kj, xj, wj)
  timer.add("sep fwd", ours_fwd, xj, separable)
  timer.add("sep f+g", ours_vg, separable, xj, wj)
  timer.add("torch fwd", torch_fwd, xt, kt)
  timer.add("torch f+g", torch_vg, kt, xt, wt)
  timer.add("naive fwd", naive_fwd, xj, kj)
  if timer.first["naive fwd"] <= TOO_SLOW_S:
    timer.add("naive f+g", naive_vg, kj, xj, wj)
  timer.run(rounds)

  # Sanity: every implementation computes the same blur.
  reference = torch_fwd(xt, kt).numpy().transpose(0, 2, 3, 1)
  separable_reference = torch_fwd(xt, torch.from_numpy(dense_separable)).numpy()
  errors = [np.abs(np.asarray(ours_fwd(xj, kj)) - reference).max(),
            np.abs(np.asarray(naive_fwd(xj, kj)) - reference).max(),
            np.abs(np.asarray(ours_fwd(xj, separable)) -
                   separable_reference.transpose(0, 2, 3, 1)).max()]
  assert max(errors) < 1e-4, errors

  row = {"B": batch, "HxW": f"{size}x{size}", "k": k,
         "method": blur_lib.choose_method(x.shape, general.shape),
         "compile": max(timer.first["ours fwd"], timer.first["ours f+g"]),
         "compile_sep": max(timer.first["sep fwd"], timer.first["sep f+g"])}
  for name in timer.calls:
    row[name] = timer.per_second(name, batch)
    row[name + " ~"] = timer.approximate(name)
  row.setdefault("naive f+g", None)
  return row


def _fmt(row, name):
  if row[name] is None:
    return "-"
  return f"{row[name]:,.0f}" + ("~" if row[name + " ~"] else "")


def _best_peer(row, kind):
  return max(row["torch " + kind], row["naive " + kind] or 0.0)


def print_table(rows):
  head = ("| B | HxW | k | auto | blur_adv fwd | torch fwd | vmap fwd | ratio | separable fwd | ratio "
          "| blur_adv f+g | torch f+g | vmap f+g | ratio | separable f+g | ratio | first call s |")
  print(head)
  print("|" + "---|" * (head.count("|") - 1))
  for row in rows:
    cells = [str(row["B"]), row["HxW"], str(row["k"]), row["method"]]
    for kind in ("fwd", "f+g"):
      best = _best_peer(row, kind)
      cells += [_fmt(row, "ours " + kind), _fmt(row, "torch " + kind), _fmt(row, "naive " + kind),
                f"{row['ours ' + kind] / best:.2f}x", _fmt(row, "sep " + kind),
                f"{row['sep ' + kind] / best:.2f}x"]
    cells.append(f"{row['compile']:.1f} / {row['compile_sep']:.1f}")
    print("| " + " | ".join(cells) + " |")


def print_bars(rows):
  def holds(condition):
    return "HOLDS" if condition else "FAILS"

  ratio = lambda row, name, kind: row[name + " " + kind] / _best_peer(row, kind)
  checks = [
      ("forward+gradient >= 2x best peer (general kernels)",
       [ratio(r, "ours", "f+g") for r in rows], 2.0),
      ("forward+gradient >= 2x best peer (separable family)",
       [ratio(r, "sep", "f+g") for r in rows], 2.0),
      ("forward >= 0.5x best peer (general kernels)", [ratio(r, "ours", "fwd") for r in rows], 0.5),
      ("forward >= 1x best peer (separable family)", [ratio(r, "sep", "fwd") for r in rows], 1.0),
  ]
  for text, ratios, bar in checks:
    print(f"- {text}: {holds(min(ratios) >= bar)} (worst {min(ratios):.2f}x)")
  compile_max = max(max(r["compile"], r["compile_sep"]) for r in rows)
  print(f"- first-call compile <= 5 s: {holds(compile_max <= 5.0)} (worst {compile_max:.1f} s)")


def native_status():
  """One line on the C++ loops: their one-off build time (rebuilt in a scratch dir), or why not."""
  reason = native_lib.unavailable_reason()
  if reason is not None:
    return f"native loops unavailable ({reason}): auto uses pure JAX"
  with tempfile.TemporaryDirectory() as scratch:
    start = time.perf_counter()
    native_lib.build(native_lib.compiler_name(), pathlib.Path(scratch) / "blur_cpu.so")
    seconds = time.perf_counter() - start
  return (f"native loops: one-off C++ build {seconds:.1f} s, cached in {native_lib.cache_dir()} "
          f"(not part of 'first call')")


PURE_JAX = ("direct", "fft", "shift", "separable")


def _sum_after(method):
  """Blur then a reduction (sum of squares), jitted: the consumer where XLA:CPU once fused the
  separable column pass and recomputed the row pass per tap (see blur_strategies._blocks)."""
  return jax.jit(lambda x, kernels: jnp.sum(blur_lib.blur(x, kernels, method=method) ** 2))


def bench_strategies(batch, size, k, rounds):
  """images/s of each pure-JAX strategy (forced), forward and forward+gradient, on general and
  on separable kernels, plus blur -> sum; and what `auto` picks for the shape."""
  x, w, general, separable = _inputs(batch, size, k)
  xj, wj, kj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(general)
  timer = Timer()
  for method in PURE_JAX:
    forward, value_and_grad = _jax_impls(method)
    timer.add(f"{method} fwd", forward, xj, kj)
    timer.add(f"{method} f+g", value_and_grad, kj, xj, wj)
    timer.add(f"{method} sep fwd", forward, xj, separable)
    timer.add(f"{method} sep->sum", _sum_after(method), xj, separable)
  timer.run(rounds)
  def pick(separable_kernels):
    auto = blur_lib.choose_method(x.shape, general.shape, separable_kernels)
    pure = blur_lib._pure_jax_method(general.shape, separable_kernels)  # pylint: disable=protected-access
    return auto if auto == pure else f"{auto} (pure JAX: {pure})"

  row = {"shape": f"{batch} x {size}x{size}, k={k}", "auto": pick(False), "auto sep": pick(True)}
  row.update({name: timer.per_second(name, batch) for name in timer.calls})
  return row


def print_strategies(rows):
  kinds = ("fwd", "f+g", "sep fwd", "sep->sum")
  head = "| shape | auto (dense / separable) | " + " | ".join(
      f"{method} {kind}" for kind in kinds for method in PURE_JAX) + " |"
  print(head)
  print("|" + "---|" * (head.count("|") - 1))
  for row in rows:
    cells = [row["shape"], f"{row['auto']} / {row['auto sep']}"]
    for kind in kinds:
      best = max(row[f"{m} {kind}"] for m in PURE_JAX)
      cells += [f"{row[f'{m} {kind}']:,.0f}" + ("*" if row[f"{m} {kind}"] == best else "")
                for m in PURE_JAX]
    print("| " + " | ".join(cells) + " |")
  print("images/s; * = fastest strategy in its group. 'auto' should name the starred strategy "
        "of its group (dense: fwd and f+g; separable: sep fwd and sep->sum) on this backend.")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7, help="timed samples per cell (best)")
  parser.add_argument("--backend", default=None,
                      help="cpu, gpu or tpu (JAX's default if unset); off CPU this implies "
                           "--strategies")
  parser.add_argument("--strategies", action="store_true",
                      help="time the pure-JAX strategies against each other (no torch needed) "
                           "instead of blur_adv against its peers")
  parser.add_argument("--shapes", default=None,
                      help="B,size,k triples separated by ';' (default: SHAPES), e.g. "
                           "'64,32,31;64,32,9' for a quick CPU check")
  args = parser.parse_args()
  shapes = SHAPES if args.shapes is None else [
      tuple(int(v) for v in triple.split(",")) for triple in args.shapes.split(";")]
  if args.backend:
    jax.config.update("jax_platforms", args.backend)
  if args.strategies or jax.default_backend() != "cpu":
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind});"
          f" best of {args.rounds} samples of >= {MIN_SAMPLE_S} s each")
    print_strategies([bench_strategies(b, s, k, args.rounds) for b, s, k in shapes])
    return
  import torch  # benchmark-only dependency (the `bench` extra)
  torch.set_num_threads(TORCH_THREADS)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} with "
        f"torch.set_num_threads({TORCH_THREADS}); images/s, best of {args.rounds} samples of "
        f">= {MIN_SAMPLE_S} s each (~: a call over {SLOW_CALL_S:.0f} s, timed once); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}; "
        f"ratio = blur_adv / best peer")
  print(native_status())
  rows = []
  for batch, size, k in shapes:
    rows.append(bench_shape(batch, size, k, torch, args.rounds))
  print_table(rows)
  print_bars(rows)


if __name__ == "__main__":
  main()
