# The commands that made this run (from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_network_seed0 --config.trainer=adversarial --config.seed=0 --config.cpu_devices=1
python -m blur_adv.evaluate --config=configs/cifar10_fast.py:table --workdir=results/cifar10/table/adversarial_network_seed0 --config.trainer=adversarial --config.seed=0 --config.cpu_devices=1 '--config.evaluators=('"'"'clean'"'"', '"'"'corruptions'"'"', '"'"'worst_case'"'"', '"'"'minimal_flip'"'"')'
# 2026-12-08: trained by the table sweep (`--only=adversarial_network_seed0 --override=cpu_devices=1`: one single-threaded
# device, the same math as the table's one device on all cores; pinned to one core beside another training run, so its
# wall_time_s, 2,947 s, is not a timing). In-run strength 0.22, 0.20, 0.11, 0.22, 0.02 at steps 200, 400, 600, 800, 962;
# at the end its mixture is 99.99% motion (the collapse issue 12 describes). Evaluated clean and corruptions only so far:
# worst_case was stopped part-way to free the core; rerunning the sweep command runs the evaluators eval.json lacks.
