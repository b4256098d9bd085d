# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/consistency_seed0 --config.trainer=standard --config.defense.consistency_weight=1.0 --config.seed=0
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/consistency_seed0 --config.trainer=standard --config.defense.consistency_weight=1.0 --config.seed=0 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
# 2026-12-05: trained (the first command); its wall_time_s (8,299 s) is not a timing: the run shared 2 cores with
# 2-3 other jobs and was paused (SIGSTOP) for 39 minutes. Evaluated the next session by the table sweep (the second
# command; 104 min wall on 2 cores shared with two other rows' trainings and evaluations: not a timing).
# 2026-12-05 (later): the table's attack became 20 steps x 4 restarts; worst_case re-run with it (wc @0.1 57.6% -> 56.8%;
# 66 min wall, 2 cores shared with another evaluation: not a timing):
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/consistency_seed0 --config.trainer=standard --config.defense.consistency_weight=1.0 --config.seed=0 "--config.evaluators=('worst_case',)"
