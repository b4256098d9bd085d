"""Default experiment: joint adversarial training of a small CNN against a learned blur adversary
on scikit-learn's digits, upscaled to 32x32 (offline). `configs/standard.py` is the same run
without the adversary.

  python -m blur_adv.main --config=configs/default.py --workdir=/tmp/digits
  python -m blur_adv.main --config=configs/default.py:runlocal --workdir=/tmp/digits_tiny

This file is the whole experiment; variants import it and override fields.
`:runlocal` shrinks any config to a seconds-long smoke run.
"""
import ml_collections

from blur_adv.defense import config as defense_config
from blur_adv.ops.families import FAMILIES  # Every kernel family the attacks know.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data: float32 NHWC images in [0, 1].
  config.dataset = "digits"  # 'digits' | 'folder:PATH' | a TFDS name.
  config.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data_dir.
  config.train_split = "train"
  config.eval_split = "test"
  config.image_size = 32
  # 'none' | 'crop_flip' | 'flip_translate2' | 'alternating_flip_translate2' |
  # 'inception_crop_flip' (see data.AUGMENTATIONS).
  config.augment = "none"
  # Evaluation (and non-inception training) images: resized whole (1.0), or the shorter side
  # resized to image_size / f and the centre image_size square kept (ImageNet: 0.875).
  config.eval_crop_fraction = 1.0
  config.data_workers = 0  # grain worker processes decoding training batches; 0: threads only.

  # Model and trainer, both by registry name.
  config.model = "small_cnn"
  config.model_kwargs = ml_collections.ConfigDict({"width": 16})
  # Test-time augmentation of every evaluation (clean, corruptions, attacks):
  # 'none' | 'flip' | 'flip_translate' (see blur_adv/models/test_time_augmentation.py).
  config.tta = "none"
  config.trainer = "adversarial"  # 'standard' | 'adversarial'.
  config.budget = 0.1  # SSIM budget in (0, 1]: a blur is admissible when SSIM >= 1 - budget.

  # The blur adversary (trainer 'adversarial'); see blur_adv/trainers/adversarial.py.
  config.adversary = ml_collections.ConfigDict()
  config.adversary.kind = "network"  # 'network' (learned) | 'pgd' (PGD-K) | 'random'.
  config.adversary.kernel_size = 7
  config.adversary.families = FAMILIES
  config.adversary.features = 16
  config.adversary.noise_dim = 8
  config.adversary.learning_rate = 1e-3
  config.adversary.fidelity_weight = 1.0  # Pull raw kernels to the budget boundary.
  config.adversary.clean_fraction = 0.5  # Share of each batch left clean (evenly spread rows).
  config.adversary.update_every = 1  # Adversary steps per classifier step: 1 / update_every.
  config.adversary.warmup_steps = 0  # Clean training first.
  config.adversary.pgd_steps = 5  # K, for kind 'pgd'.
  # Per-example refinement of any kind's kernels (attacks.refine): sign ascent on free-form logits
  # from the proposal with `refine_steps` classifier gradients (each one forward and input-gradient
  # pass over the attacked examples), each followed by `refine_linear_steps` steps on the loss
  # linearized in the attacked image (each a blur and an SSIM projection: cheap).
  config.adversary.refine_steps = 0
  config.adversary.refine_linear_steps = 1
  config.adversary.refine_step_size = 0.1  # In the attacks' raw units (free-form logits: 10x).
  # Return each example's iterate of highest loss, not the last (one more forward pass).
  config.adversary.refine_best_iterate = False
  # Adversary strength (blur_adv/trainers/strength.py), every `strength_every_steps` steps and at
  # the end (0 = never): on the first `strength_examples` training images, the adversary's loss
  # gain and flip rate against those of the per-example attack over all its families
  # (`strength_attack_steps` sign steps, `strength_attack_restarts` starts per family), logged
  # as adversary/* to TensorBoard and final_metrics.json.
  config.adversary.strength_every_steps = 100
  config.adversary.strength_examples = 64
  config.adversary.strength_attack_steps = 10
  config.adversary.strength_attack_restarts = 2

  # Defenses, all off here (see blur_adv/defense/): blur augmentation (augment_*), Gaussian-noise
  # augmentation (noise_probability, noise_std: added last, after any blur, to the training batch),
  # a deblurring front-end before the classifier (front_end: none | unsharp | wiener |
  # richardson_lucy | unet), the blur-consistency loss (consistency_weight) and fine-tuning from
  # a run (init_from).
  config.defense = defense_config.default_settings()

  # Robustness evaluation (evaluators 'corruptions', 'worst_case', 'minimal_flip').
  config.robustness = ml_collections.ConfigDict()
  config.robustness.num_examples = 256  # First examples of the eval split.
  config.robustness.budgets = (0.02, 0.05, 0.1, 0.2)
  config.robustness.families = FAMILIES
  config.robustness.kernel_size = 7
  config.robustness.attack_steps = 10
  config.robustness.attack_restarts = 1
  config.robustness.attack_step_size = 0.1
  config.robustness.flip_search_steps = 6
  # The minimal-flip search runs its attack at every bisection probe, so it may use a cheaper one
  # than worst_case: None = attack_steps / attack_restarts.
  config.robustness.flip_attack_steps = ml_collections.config_dict.placeholder(int)
  config.robustness.flip_attack_restarts = ml_collections.config_dict.placeholder(int)
  config.robustness.corruption_table = ml_collections.config_dict.placeholder(str)  # By size.
  config.robustness.baseline_eval = ml_collections.config_dict.placeholder(str)  # eval.json.
  config.robustness.num_saved_examples = 16
  # Evaluator 'attack_convergence': worst-case accuracy on this many first examples with the
  # attack above and with 5x its steps and 5 restarts (blur_adv/evaluators/convergence.py).
  config.robustness.convergence_examples = 256

  # Parallelism: 'shard_map' (jit + shard_map over a mesh) or 'pmap'.
  config.parallelism = "shard_map"
  config.num_devices = ml_collections.config_dict.placeholder(int)  # None: all devices.
  # CPU only: split the host into this many single-threaded devices (0: one device on all
  # cores). XLA:CPU's threading scales poorly; on 2 cores, 2 devices train 1.3x faster.
  config.cpu_devices = 0

  # Optimization. batch_size is global (all devices and processes).
  config.batch_size = 128
  config.eval_batch_size = 256
  config.num_epochs = 15.0
  config.num_train_steps = ml_collections.config_dict.placeholder(int)  # Overrides num_epochs.
  config.optimizer = "sgd"  # 'sgd' | 'adamw' | 'sgd_muon' (Muon on conv kernels, SGD on the rest).
  config.learning_rate = 0.2  # Peak, for batch 256; scaled linearly with batch_size.
  config.lr_schedule = "cosine"  # 'cosine' | 'triangular'; both peak after warmup_epochs.
  config.bias_lr_scale = 1.0  # Learning-rate multiplier of biases and BatchNorm offsets.
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.warmup_epochs = 2.0
  # optimizer='sgd_muon' only: Muon's peak rate (not scaled by batch size) and momentum; the
  # speedrun's Muon version used 0.24 and 0.6 at batch 2,000.
  config.muon_learning_rate = 0.24
  config.muon_momentum = 0.6
  config.label_smoothing = 0.0
  # Lookahead on the train state (optim.Lookahead): every lookahead_every steps (0: off)
  # the weights are pulled to a moving average whose decay ramps up to lookahead_decay.
  config.lookahead_every = 0
  config.lookahead_decay = 0.95 ** 5

  # Logging, evaluation and checkpoints.
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 200
  config.keep_checkpoints = 3
  config.evaluators = ("clean",)

  if arg == "runlocal":
    runlocal(config)
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; known: runlocal.")
  return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks `config` in place to a seconds-long run for laptops and tests."""
  config.model_kwargs = ml_collections.ConfigDict({"width": 8})
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 12
  config.warmup_epochs = 0.0
  config.log_every_steps = 4
  config.eval_every_steps = 12
  config.checkpoint_every_steps = 4
  config.eval_split = config.eval_split.split("[")[0] + "[:128]"
  config.adversary.features = 4
  config.adversary.strength_every_steps = 0  # Seconds-long runs skip the reference attack.
  config.robustness.num_examples = 16
  config.robustness.budgets = (0.05, 0.1)
  config.robustness.families = ("gaussian", "motion")
  config.robustness.attack_steps = 2
  config.robustness.flip_search_steps = 2
  config.robustness.num_saved_examples = 8
  config.robustness.convergence_examples = 8
  return config
