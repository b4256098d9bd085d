# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.trainer=adversarial --config.seed=0 --workdir=W  # 86.62% val (5,000 images, flip_translate TTA); adversary/strength 0.23, 0.29, 0.22, 0.25, 0.12, 0.12, 0.11 at steps 200-1312; 1,621 s in train_and_evaluate on 2 quiet cores, seven strength measurements included (2026-12-07)
# 2026-12-07 (later): the recipe became v3 (alternating flips, Lookahead); this row is `configs/cifar10_fast.py:v2`. Re-evaluate it with:
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:v2 --workdir=results/cifar10/fast75_adversarial_seed0 --config.trainer=adversarial
