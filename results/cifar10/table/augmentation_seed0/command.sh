# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/augmentation_seed0 --config.trainer=standard --config.defense.augment_probability=0.5 --config.seed=0
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/augmentation_seed0 --config.trainer=standard --config.defense.augment_probability=0.5 --config.seed=0 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
