"""Throughput of the clean train step vs. a plain hand-written flax+optax step.

  python benchmarks/train_bench.py [--model=resnet20 --batch_size=128 --image_size=32]
  python benchmarks/train_bench.py --model=whitened_convnet \
      --model_kwargs='{"widths": [64, 128, 128], "activation": "relu"}' --batch_size=256  # fast

Both steps train the same model with the same optimizer on the same
device-resident batch; ours runs the registry trainer's per-device step
through `parallel.DataParallel` (shard_map and pmap over one device). Rounds
are interleaved so load from other processes hits all rows alike; the table
reports the best and the median round in wall-clock images/s, images per
CPU-second of this process (less sensitive to other processes sharing the
cores), the ratios of both to the plain step, and the first-call (compile +
run) time.
"""
import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from blur_adv import components  # pylint: disable=unused-import  (registers every model)
from blur_adv import models, optim, parallel, trainers
from blur_adv.trainers import adversarial as adversarial_trainer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from configs import default  # pylint: disable=g-import-not-at-top,wrong-import-position


def bench_config(args) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      model=args.model, model_kwargs=json.loads(args.model_kwargs), learning_rate=0.1,
      batch_size=args.batch_size, warmup_epochs=0.0, optimizer="sgd", momentum=0.9,
      weight_decay=5e-4, label_smoothing=0.0))
  # The adversarial steps use the default experiment's adversary and budget.
  config.budget = default.get_config().budget
  config.adversary = default.get_config().adversary
  return config


def plain_step_fn(model, tx):
  """What one would write by hand: jit of a flax+optax step, no parallel machinery."""

  @jax.jit
  def step(params, batch_stats, opt_state, images, labels):
    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": batch_stats}, images,
                                    train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates["batch_stats"]
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss

  return step


def make_runners(args):
  config = bench_config(args)
  rng = np.random.default_rng(0)
  images = rng.random((args.batch_size, args.image_size, args.image_size, 3), np.float32)
  labels = rng.integers(0, 10, args.batch_size).astype(np.int32)
  trainer = trainers.standard_trainer(config, 10, total_steps=10_000, steps_per_epoch=100)
  runners = {}

  def add(name, trainer, mode):
    host_state = jax.device_get(trainer.init_state(jax.random.PRNGKey(0), images))
    dp = parallel.DataParallel(mode, num_devices=1)
    step = dp.wrap_train_step(trainer.train_step)
    batch = jax.block_until_ready(dp.shard_batch(
        {"image": images, "label": labels, "mask": np.ones(len(labels), bool)}))
    key = dp.put_rng(jax.random.PRNGKey(1))
    box = {"state": dp.replicate(host_state)}

    def run(n):
      for _ in range(n):
        box["state"], metrics = step(box["state"], batch, key)
      jax.block_until_ready(metrics)
    runners[name] = run

  for mode in parallel.MODES:
    add(f"blur_adv {mode}", trainer, mode)
  if args.adversarial:
    variants = ([("adversarial network", {})]
                + [(f"adversarial network+refine-{k}x{args.refine_linear_steps}",
                    {"refine_steps": k, "refine_linear_steps": args.refine_linear_steps})
                   for k in args.refine_steps]
                + [(f"adversarial PGD-{k}", {"kind": "pgd", "pgd_steps": k})
                   for k in args.pgd_steps]
                + [(f"adversarial {name}", fields)
                   for name, fields in json.loads(args.adversaries).items()])
    for name, fields in variants:
      adv_config = bench_config(args)
      adv_config.adversary.update(fields)
      add(name, adversarial_trainer.adversarial_trainer(adv_config, 10, 10_000, 100), "shard_map")

  model = models.create_model(args.model, 10)
  tx = optim.create_optimizer(config, 10_000, 100)
  # The plain step starts from the same initial parameters as the registry trainer.
  host_state = jax.device_get(trainer.init_state(jax.random.PRNGKey(0), images))
  plain = plain_step_fn(model, tx)
  params, stats = jax.device_put((host_state.params, host_state.batch_stats))
  box = {"vars": (params, stats, tx.init(params))}
  d_images, d_labels = jax.device_put((jnp.asarray(images), jnp.asarray(labels)))

  def run_plain(n):
    for _ in range(n):
      p, s, o, loss = plain(*box["vars"], d_images, d_labels)
      box["vars"] = (p, s, o)
    jax.block_until_ready(loss)
  runners["plain flax+optax jit"] = run_plain
  return runners


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--model_kwargs", default="{}", help="The model's kwargs, as JSON.")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=5, help="Steps per timed round.")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--adversarial", type=int, default=1, help="Also time adversarial steps.")
  parser.add_argument("--pgd_steps", type=int, nargs="*", default=[1, 3])
  parser.add_argument("--refine_steps", type=int, nargs="*", default=[1, 2],
                      help="Network adversary + this many refinement gradients (attacks.refine).")
  parser.add_argument("--refine_linear_steps", type=int, default=4,
                      help="Linearized steps per refinement gradient.")
  parser.add_argument("--adversaries", default="{}",
                      help='More adversarial steps to time, as JSON {name: {adversary field: '
                           'value}}, e.g. \'{"sparse": {"clean_fraction": 0.95, '
                           '"refine_steps": 10}}\'.')
  args = parser.parse_args()

  runners = make_runners(args)
  compile_s, rates, cpu_rates = {}, {name: [] for name in runners}, {name: [] for name in runners}
  for name, run in runners.items():
    start = time.perf_counter()
    run(1)
    compile_s[name] = time.perf_counter() - start
  for _ in range(args.rounds):
    for name, run in runners.items():
      start, cpu_start = time.perf_counter(), time.process_time()
      run(args.steps)
      images = args.steps * args.batch_size
      rates[name].append(images / (time.perf_counter() - start))
      cpu_rates[name].append(images / (time.process_time() - cpu_start))

  plain = "plain flax+optax jit"
  best_plain, cpu_plain = max(rates[plain]), statistics.median(cpu_rates[plain])
  print(f"\n{args.model}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{jax.device_count()} {jax.default_backend()} device(s), {args.rounds} rounds x "
        f"{args.steps} steps")
  print(f"| {'step':<30} | {'best img/s':>10} | {'median img/s':>12} | {'img/CPU-s':>9} "
        f"| {'best vs plain':>13} | {'CPU vs plain':>12} | {'first step (s)':>14} |")
  print(f"|{'-' * 32}|{'-' * 12}|{'-' * 14}|{'-' * 11}|{'-' * 15}|{'-' * 14}|{'-' * 16}|")
  for name in runners:
    best, median = max(rates[name]), statistics.median(rates[name])
    cpu = statistics.median(cpu_rates[name])
    print(f"| {name:<30} | {best:>10.1f} | {median:>12.1f} | {cpu:>9.1f} "
          f"| {best / best_plain:>13.3f} | {cpu / cpu_plain:>12.3f} | {compile_s[name]:>14.2f} |")
  clean = "blur_adv shard_map"
  for name in runners:
    if name.startswith("adversarial"):
      ratio = statistics.median(rates[clean]) / statistics.median(rates[name])
      print(f"{name}: {ratio:.2f}x the clean step's time (median rounds)")

if __name__ == "__main__":
  main()
