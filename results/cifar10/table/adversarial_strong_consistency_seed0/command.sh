# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_strong_consistency_seed0 --config.trainer=adversarial --config.adversary.refine_steps=1 --config.adversary.refine_linear_steps=4 --config.adversary.refine_step_size=0.1 --config.defense.consistency_weight=1.0 --config.seed=0
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_strong_consistency_seed0 --config.trainer=adversarial --config.adversary.refine_steps=1 --config.adversary.refine_linear_steps=4 --config.adversary.refine_step_size=0.1 --config.defense.consistency_weight=1.0 --config.seed=0 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
# 2026-12-05: wall times are not timings (training 3,275 s and the evaluation shared 2 cores with one or two other jobs).
# clean, corruptions and worst_case (20 x 4) finished; minimal_flip was still running when the session ended (see eval.json):
# `python experiments/sweep.py --sweep=table --config=configs/cifar10_fast.py:table --out=results/cifar10/table
# --only=adversarial_strong_consistency_seed0` runs only the evaluators its eval.json lacks.
