# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.trainer=adversarial --config.adversary.strength_every_steps=481 --workdir=W  # 85.82% [84.80, 86.78] val (flip_translate TTA); adversary/strength 0.363 at step 481, 0.090 at 962; 1,511 s in train_and_evaluate on 2 quiet cores, two strength measurements included (2026-12-05)
# 2026-12-07: configs/cifar10_fast.py became 7.5 epochs without a whitening bias on two single-threaded devices;
# this row's net (with the bias) is configs/cifar10_fast.py:v1, e.g. to re-evaluate it:
# python -m blur_adv.evaluate --config=configs/cifar10_fast.py:v1 --workdir=results/cifar10/fast55_adversarial_seed0
