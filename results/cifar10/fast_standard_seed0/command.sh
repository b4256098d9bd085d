# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --workdir=/tmp/runs/fast_s0
python -m blur_adv.evaluate --config=configs/cifar10_fast.py --workdir=results/cifar10/fast_standard_seed0
