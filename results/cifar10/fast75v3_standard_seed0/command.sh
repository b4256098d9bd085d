# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.seed=0 --workdir=W  # 87.44% [86.48, 88.36] val (5,000 images, flip_translate TTA), 1,286 s in train_and_evaluate on 2 cores, quiet but for a ~17 s test run in its first minute (2026-12-08; the VM ran 0.88-1.32 steps/s during the run)
python -m blur_adv.evaluate --config=configs/cifar10_fast.py --workdir=results/cifar10/fast75v3_standard_seed0  # re-evaluate
