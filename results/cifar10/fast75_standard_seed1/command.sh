# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.seed=1 --workdir=W  # 87.24% [86.28, 88.16] val (5,000 images, flip_translate TTA), 1,352 s in train_and_evaluate on 2 quiet cores (2026-12-07; the VM ran 1.00 steps/s against 1.12-1.34 for seed 0 an hour earlier)
# 2026-12-07 (later): the recipe became v3 (alternating flips, Lookahead); this row is `configs/cifar10_fast.py:v2`. Re-evaluate it with:
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:v2 --workdir=results/cifar10/fast75_standard_seed1
