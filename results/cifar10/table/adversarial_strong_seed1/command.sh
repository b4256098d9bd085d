# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_strong_seed1 --config.trainer=adversarial --config.adversary.refine_steps=1 --config.adversary.refine_linear_steps=4 --config.adversary.refine_step_size=0.1 --config.seed=1
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_strong_seed1 --config.trainer=adversarial --config.adversary.refine_steps=1 --config.adversary.refine_linear_steps=4 --config.adversary.refine_step_size=0.1 --config.seed=1 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
# 2026-12-05: both commands run by the table sweep on 2 cores shared with two other rows (training 3,729 s, evaluation
# 12:45-14:10): not timings. In-run strength 0.70, 0.73, 0.67, 0.64 at steps 200, 400, 600, 800 (final: 0.64).
