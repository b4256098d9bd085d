# The commands that made this run (from the repository root).
# Trained as results/cifar10/fast55_standard_seed1 (`python -m blur_adv.main --config=configs/cifar10_fast.py
# --config.seed=1 --workdir=W`): `:table` changes only evaluation settings (no test-time augmentation, 1,000 robustness
# images, budgets 0.05 and 0.1, one kept checkpoint), so the training is the same; its checkpoint and
# final_metrics.json are copied here; the table sweep's `main` below
# found the final step and only re-ran the final evaluation (no TTA: 85.38%; with TTA it was 86.08%).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/standard_seed1 --config.trainer=standard --config.seed=1
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/standard_seed1 --config.trainer=standard --config.seed=1 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
