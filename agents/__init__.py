"""Policy-gradient agents, MLE and adversarial training, and the papers' systems.

See ``docs/agents.md``. The main names:

- Policies: :class:`SASRecPolicy`, :class:`GRUPolicy` (both :class:`SequencePolicy`).
- Training: :class:`MLETrainer` (CE / BCE, early stopping; SAO/APR perturbations with a
  :class:`PerturbationConfig`), :class:`PolicyGradientTrainer` (REINFORCE, MC rollouts, MaxEnt),
  :class:`AdversarialTrainer` (MFGAN's Algorithm 1 and its EB-SeqGAN twin; its generator update
  is any :class:`GeneratorAlgorithm`).
- Health metrics: :func:`oracle_continuation_loglik`, :func:`cascading_error`.
- MF-BPR and APR: :class:`BPRMFRecommender`, :class:`BPRTrainer`, :class:`APRTrainer`,
  :func:`perturbation_robustness`.
- ACVAE: :class:`ACVAEPolicy`, :class:`ACVAETrainer`, :func:`latent_correlation`.
- The papers' systems with one set of defaults: :class:`ModelZoo` (``benchmarks/reproduce.py``).
- stable-baselines3 integration lives in ``agents.sb3`` (imported on demand: it loads SB3).
"""

from __future__ import annotations

from agents.adversarial import AdversarialTrainer
from agents.adversarial_config import AdversarialConfig
from agents.adversarial_steps import GeneratorAlgorithm
from agents.baselines.acvae.analysis import latent_correlation
from agents.baselines.acvae.model import ACVAEConfig, ACVAEPolicy
from agents.baselines.acvae.training import ACVAEResult, ACVAETrainer, ACVAETrainingConfig
from agents.baselines.apr import APRConfig, APRTrainer, perturbation_robustness
from agents.baselines.bpr import BPRConfig, BPRResult, BPRTrainer
from agents.baselines.mf import BPRMFRecommender
from agents.experiments.zoo import FitResult, ModelZoo, ZooConfig
from agents.gru import GRUConfig, GRUPolicy
from agents.health_plot import plot_training_health
from agents.mle import MLEConfig, MLEResult, MLETrainer
from agents.perturbation import PerturbationConfig, adversarial_loss, fast_gradient_delta
from agents.policy import SequencePolicy
from agents.quality import cascading_error, oracle_continuation_loglik
from agents.reinforce import PGConfig, PolicyGradientTrainer
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.weighted_mle import WeightedMLEConfig, WeightedMLEGenerator

__all__ = [
    "ACVAEConfig",
    "ACVAEPolicy",
    "ACVAEResult",
    "ACVAETrainer",
    "ACVAETrainingConfig",
    "APRConfig",
    "APRTrainer",
    "BPRConfig",
    "BPRMFRecommender",
    "BPRResult",
    "BPRTrainer",
    "AdversarialConfig",
    "GeneratorAlgorithm",
    "AdversarialTrainer",
    "FitResult",
    "GRUConfig",
    "GRUPolicy",
    "MLEConfig",
    "MLEResult",
    "MLETrainer",
    "ModelZoo",
    "PGConfig",
    "PerturbationConfig",
    "PolicyGradientTrainer",
    "SASRecConfig",
    "SASRecPolicy",
    "SequencePolicy",
    "WeightedMLEConfig",
    "WeightedMLEGenerator",
    "ZooConfig",
    "adversarial_loss",
    "cascading_error",
    "fast_gradient_delta",
    "latent_correlation",
    "oracle_continuation_loglik",
    "perturbation_robustness",
    "plot_training_health",
]
