# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_strong_budget0.2_noise_seed0 --config.trainer=adversarial --config.adversary.refine_steps=1 --config.adversary.refine_linear_steps=4 --config.adversary.refine_step_size=0.1 --config.budget=0.2 --config.defense.noise_probability=0.5 --config.defense.noise_std=0.1 --config.seed=0
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_strong_budget0.2_noise_seed0 --config.trainer=adversarial --config.adversary.refine_steps=1 --config.adversary.refine_linear_steps=4 --config.adversary.refine_step_size=0.1 --config.budget=0.2 --config.defense.noise_probability=0.5 --config.defense.noise_std=0.1 --config.seed=0 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"')'
# 2026-12-07: trained with the first version of defense.noise_probability (commit f158f19), which clipped every
# example to [0, 1], not only the noised ones; since 66e9ff8 only noised examples are clipped (clip's gradient at an
# exactly saturated pixel is 0.5, so the adversary's input gradient there was halved on the rows left alone).
# Evaluated with clean and corruptions only; worst_case and minimal_flip not run (its clean accuracy, 79.0%, is
# 6.4 points below the standard rows', outside the clean-accuracy bar, so it is no candidate for the best row).
