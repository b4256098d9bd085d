"""Every part a config picks by name, imported here (and only here) so it is registered.

Trainers (`config.trainer`), models (`config.model`), evaluators (`config.evaluators`), the
choices of `config.optimizer` and `config.parallelism`, and the config sections with their
validators (`config.defense`, `config.adversary`, `config.robustness`) register themselves when
their module is imported. Importing this module imports all of them, so
the registries and `config_checks.validate` know every name before a config is checked.
"""
# pylint: disable=unused-import
from blur_adv import optim, parallel
from blur_adv.defense import config as defense_config
from blur_adv.evaluators import clean, convergence, robustness
from blur_adv.models import classifiers, whitened_net
from blur_adv.trainers import adversarial, standard
