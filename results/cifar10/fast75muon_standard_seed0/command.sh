# The commands that made this row (run from the repository root).
python -m blur_adv.main --config=configs/cifar10_fast.py --config.seed=0 --config.optimizer=sgd_muon --config.muon_learning_rate=0.1 --workdir=W  # 88.18% val (5,000 images, flip_translate TTA), 1,107 s in train_and_evaluate on 2 cores, quiet but for a 4 s test run (2026-12-08; ~1.25-1.32 steps/s)
python -m blur_adv.evaluate --config=configs/cifar10_fast.py --config.optimizer=sgd_muon --config.muon_learning_rate=0.1 --workdir=results/cifar10/fast75muon_standard_seed0  # re-evaluate
