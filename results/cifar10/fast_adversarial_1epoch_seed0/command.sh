# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --workdir=/tmp/runs/fast_adv_1ep --config.trainer=adversarial --config.num_epochs=1 --config.warmup_epochs=0.23
# 2026-12-07: configs/cifar10_fast.py became 7.5 epochs without a whitening bias on two single-threaded devices;
# this row's net (with the bias) is configs/cifar10_fast.py:v1, e.g. to re-evaluate it:
# python -m blur_adv.evaluate --config=configs/cifar10_fast.py:v1 --workdir=results/cifar10/fast_adversarial_1epoch_seed0
