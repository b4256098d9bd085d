# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.seed=1 --workdir=W  # 87.24% [86.28, 88.18] val (5,000 images, flip_translate TTA), 1,100 s in train_and_evaluate on 2 quiet cores (2026-12-08; the VM ran ~1.2 steps/s)
python -m blur_adv.evaluate --config=configs/cifar10_fast.py --workdir=results/cifar10/fast75v3_standard_seed1  # re-evaluate
