# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/augmentation_seed1 --config.trainer=standard --config.defense.augment_probability=0.5 --config.seed=1
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/augmentation_seed1 --config.trainer=standard --config.defense.augment_probability=0.5 --config.seed=1 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
# 2026-12-05: both commands run by the table sweep on 2 cores shared with two other rows (training 2,864 s, evaluation
# 12:33-14:02): not timings.
