# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.num_epochs=5.5 --config.warmup_epochs=1.265 --config.seed=0 --workdir=W  # 86.68% [85.70, 87.64] val (5,000 images, flip_translate TTA), 1,118 s in train_and_evaluate on 2 quiet cores (2026-12-05)
# 2026-12-07: configs/cifar10_fast.py became 7.5 epochs without a whitening bias on two single-threaded devices;
# this row's net (with the bias) is configs/cifar10_fast.py:v1, e.g. to re-evaluate it:
# python -m blur_adv.evaluate --config=configs/cifar10_fast.py:v1 --workdir=results/cifar10/fast55_standard_seed0
