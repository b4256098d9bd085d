# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --workdir=/tmp/runs/fast_adv_1ep --config.trainer=adversarial --config.num_epochs=1 --config.warmup_epochs=0.23
