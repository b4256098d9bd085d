"""Train-step throughput of the fast recipe's net and ResNet-20: JAX vs PyTorch, FLOP/s vs roofline.

  python benchmarks/model_bench.py [--batch_sizes 128 256 512] [--rounds 5] [--cpu_devices 2]
  (PyTorch rows need the `bench` extra: pip install -e ".[bench]")

For each model and batch size it times one SGD train step (forward, backward, Nesterov update,
BatchNorm in training mode) on a device-resident batch: JAX through `jax.jit` of a flax+optax
step, PyTorch eager with the same architecture. FLOPs per image come from XLA's cost analysis
of the JAX step, so both columns of GFLOP/s divide the same work. The roofline is a float32
2048^3 matmul measured in the same run. Implementations are timed in turn, best of `--rounds`.
Variants: `--dtype bfloat16` runs the JAX convolutions in bfloat16 (BatchNorm statistics in
float32); `--activation gelu` swaps the fast net's ReLU for the speedrun's GELU;
`--whitening_bias 1` gives the fast net the speedrun's trained bias after the whitening layer
(the recipe has none, so its backward pass stops at the first conv).

`--cpu_devices N` (default 2) also times the JAX step as the recipe runs it on CPU
(`config.cpu_devices`): data parallel over N single-threaded XLA devices, BatchNorm moments
synchronized. JAX fixes its devices at start-up, so that column comes from a child process run
just before, one measurement at a time.
"""
import argparse
import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from blur_adv import parallel
from blur_adv.models import classifiers, whitened_net

FAST_KWARGS = {"widths": (64, 128, 128)}


def matmul_roofline_gflops(n: int = 2048, repeats: int = 10) -> float:
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def jax_runner(model, batch_size: int, data_parallel: bool = False):
  """A runner `run(steps)` of the jitted train step, and the step's FLOPs per image.

  With `data_parallel`, the step runs as the trainers run it on several devices: split over
  all devices by `parallel.DataParallel`, gradients averaged, BatchNorm moments synchronized
  (`model` must then name `parallel.DATA_AXIS` as its `bn_axis_name`).
  """
  rng = np.random.default_rng(0)
  images = rng.random((batch_size, 32, 32, 3), np.float32)
  labels = rng.integers(0, 10, batch_size).astype(np.int32)
  variables = model.clone(bn_axis_name=None).init(jax.random.PRNGKey(0), images, train=False)
  tx = optax.sgd(0.1, momentum=0.9, nesterov=True)

  def step(state, batch, rng):
    del rng
    params, stats, opt_state = state
    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": stats}, batch[0], train=True,
                                    mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), updates
    (_, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    if data_parallel:
      grads = jax.lax.pmean(grads, parallel.DATA_AXIS)
    deltas, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, deltas), updates["batch_stats"], opt_state), None

  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  if data_parallel:
    dp = parallel.DataParallel("shard_map")
    state, batch, rng = dp.replicate(state), dp.shard_batch((images, labels)), dp.put_rng(0)
    compiled = dp.wrap_train_step(step)
    flops = float("nan")  # Per device under SPMD; the caller takes the 1-device count.
  else:
    batch, rng = (jnp.asarray(images), jnp.asarray(labels)), None
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch, rng).compile()
    cost = compiled.cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
  box = {"state": state}

  def run(steps):
    for _ in range(steps):
      box["state"], _ = compiled(box["state"], batch, rng)
    jax.block_until_ready(box["state"])
  return run, flops / batch_size


def torch_models():
  """The same two architectures in PyTorch (NCHW), or None without torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None

  class Group(nn.Module):
    def __init__(self, cin, cout, act):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
      self.norm1 = nn.BatchNorm2d(cout, affine=True)
      self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
      self.norm2 = nn.BatchNorm2d(cout, affine=True)
      self.act = act()

    def forward(self, x):
      x = self.act(self.norm1(nn.functional.max_pool2d(self.conv1(x), 2)))
      return self.act(self.norm2(self.conv2(x)))

  class FastNet(nn.Module):
    def __init__(self, widths, act, whitening_bias):
      super().__init__()
      self.whiten = nn.Conv2d(3, 24, 2, bias=whitening_bias)
      self.whiten.weight.requires_grad = False
      chans = (24,) + tuple(widths)
      self.groups = nn.Sequential(*[Group(a, b, act) for a, b in zip(chans, chans[1:])])
      self.head = nn.Linear(widths[-1], 10, bias=False)

    def forward(self, x):
      x = self.groups(nn.functional.gelu(self.whiten(x)))
      return self.head(torch.amax(x, dim=(2, 3))) / 9

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.b1 = nn.BatchNorm2d(cout)
      self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.b2 = nn.BatchNorm2d(cout)
      self.short = None
      if stride != 1 or cin != cout:
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))

    def forward(self, x):
      y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
      return torch.relu(y + (x if self.short is None else self.short(x)))

  class ResNet20(nn.Module):
    def __init__(self):
      super().__init__()
      self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                nn.ReLU())
      layers, cin = [], 16
      for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
          layers.append(Block(cin, width, 2 if stage and not block else 1))
          cin = width
      self.layers = nn.Sequential(*layers)
      self.head = nn.Linear(64, 10)

    def forward(self, x):
      return self.head(self.layers(self.stem(x)).mean(dim=(2, 3)))

  return torch, {"resnet20": ResNet20, "fast": FastNet}


def torch_runner(torch, net, batch_size: int):
  images = torch.rand(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, 10, (batch_size,))
  net = net.to(memory_format=torch.channels_last).train()
  params = [p for p in net.parameters() if p.requires_grad]
  opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
  loss_fn = torch.nn.CrossEntropyLoss()

  def run(steps):
    for _ in range(steps):
      opt.zero_grad(set_to_none=True)
      loss_fn(net(images), labels).backward()
      opt.step()
  return run


def time_round(run, batch_size, steps, results):
  """Appends this round's images/s to `results` (the caller interleaves implementations)."""
  start = time.perf_counter()
  run(steps)
  results.append(steps * batch_size / (time.perf_counter() - start))


def jax_models(args, bn_axis_name=None):
  fast_kwargs = dict(FAST_KWARGS, activation=args.activation, dtype=args.dtype,
                     whitening_bias=bool(args.whitening_bias))
  return {
      "fast": whitened_net.WhitenedConvNet(num_classes=10, bn_axis_name=bn_axis_name,
                                           **fast_kwargs),
      "resnet20": classifiers.create_model("resnet20", 10, bn_axis_name=bn_axis_name),
  }


def best_rate(run, batch_size, args) -> float:
  run(1)  # Compile / warm up.
  rates = []
  for _ in range(args.rounds):
    time_round(run, batch_size, args.steps, rates)
  return max(rates)


def child_rates(args) -> dict[str, float]:
  """`--cpu_devices N` rates, measured in a child process: {"model/batch": images/s}."""
  command = [sys.executable, __file__, "--child", "--cpu_devices", str(args.cpu_devices),
             "--steps", str(args.steps), "--rounds", str(args.rounds), "--dtype", args.dtype,
             "--activation", args.activation, "--whitening_bias", str(args.whitening_bias),
             "--batch_sizes", *map(str, args.batch_sizes)]
  out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_sizes", type=int, nargs="*", default=[128, 256, 512])
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--activation", default="relu", choices=["relu", "gelu"])
  parser.add_argument("--whitening_bias", type=int, default=0, choices=[0, 1])
  parser.add_argument("--torch", type=int, default=1, help="Also time PyTorch (bench extra).")
  parser.add_argument("--cpu_devices", type=int, default=2,
                      help="Also time N single-threaded CPU devices (0: skip).")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:  # Only the data-parallel JAX rates, as one JSON line.
    parallel.use_single_threaded_cpu_devices(args.cpu_devices)
    rates = {f"{name}/{b}": best_rate(jax_runner(model, b, data_parallel=True)[0], b, args)
             for b in args.batch_sizes
             for name, model in jax_models(args, parallel.DATA_AXIS).items()}
    print(json.dumps(rates))
    return
  split = child_rates(args) if args.cpu_devices else {}
  torch_pack = torch_models() if args.torch else None
  roofline = matmul_roofline_gflops()
  print(f"float32 matmul roofline (2048^3, measured now): {roofline:.0f} GFLOP/s; "
        f"{jax.default_backend()}, dtype {args.dtype}, fast-net activation {args.activation}, "
        f"whitening bias {bool(args.whitening_bias)}")
  print(f"JAX: one device on all cores; 'split': {args.cpu_devices} single-threaded devices "
        "(config.cpu_devices), measured first in a child process.")
  print("| model | batch | JAX img/s | GFLOP/img (XLA) | JAX GFLOP/s | % of roofline "
        "| split img/s | split GFLOP/s | split / JAX | PyTorch img/s | best JAX / PyTorch |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for batch_size in args.batch_sizes:
    for name, model in jax_models(args).items():
      run, flops_per_image = jax_runner(model, batch_size)
      runners = {"jax": run}
      if torch_pack:
        torch, nets = torch_pack
        torch.manual_seed(0)
        activation = torch.nn.ReLU if args.activation == "relu" else torch.nn.GELU
        net = (nets[name](FAST_KWARGS["widths"], activation, bool(args.whitening_bias))
               if name == "fast" else nets[name]())
        runners["torch"] = torch_runner(torch, net, batch_size)
      rates = {key: [] for key in runners}
      for run in runners.values():
        run(1)  # Compile / warm up.
      for _ in range(args.rounds):  # Interleaved, so a slow moment hits both.
        for key, run in runners.items():
          time_round(run, batch_size, args.steps, rates[key])
      jax_rate = max(rates["jax"])
      split_rate = split.get(f"{name}/{batch_size}", float("nan"))
      torch_rate = max(rates["torch"]) if "torch" in rates else float("nan")
      gflops, split_gflops = (r * flops_per_image / 1e9 for r in (jax_rate, split_rate))
      best = max(jax_rate, split_rate) if split else jax_rate
      print(f"| {name} | {batch_size} | {jax_rate:.0f} | {flops_per_image / 1e9:.3f} | "
            f"{gflops:.1f} | {100 * gflops / roofline:.0f}% | {split_rate:.0f} | "
            f"{split_gflops:.1f} | {split_rate / jax_rate:.2f} | {torch_rate:.0f} | "
            f"{best / torch_rate:.2f} |", flush=True)


if __name__ == "__main__":
  main()
