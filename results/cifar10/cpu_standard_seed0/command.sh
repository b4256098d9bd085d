# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_cpu.py --config.trainer=standard --workdir=W  # 67.96% val, 702 steps
python -m blur_adv.evaluate --config=configs/cifar10_cpu.py --config.trainer=standard --workdir=W --config.robustness.num_examples=1000 "--config.evaluators=('worst_case',)"  # eval.json worst_case: 1,000 images, 4:07 wall on 2 quiet cores; identical to c335376's code (46 min loaded)
python -m blur_adv.evaluate --config=configs/cifar10_cpu.py --config.trainer=standard --workdir=W "--config.robustness.budgets=(0.1,)" --config.robustness.convergence_examples=128 "--config.evaluators=('attack_convergence',)"  # eval.json attack_convergence (302 s wall, quiet)
