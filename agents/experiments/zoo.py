"""The seed papers' systems with one set of defaults, fit on one split: a model zoo.

``ModelZoo(split, ZooConfig(), seed=0).fit("mfgan")`` trains a system and returns a
:class:`FitResult` whose ``recommender`` ranks with ``recgym.evaluate``. Systems that start from
another one (SASRec+SAO, MFGAN from SASRec MLE; EB-SeqGAN from GRU4Rec MLE; APR from BPR-MF)
reuse the zoo's cached starting point, so a table of all systems trains each base once per seed;
``total_seconds`` counts the starting point's time too. ``sasrec-continued`` is not a paper's
system but SAO's control: SAO's extra epochs from the same start, without the adversary.
MFGAN comes in both generator modes, policy gradient (``mfgan``) and the official code's
weighted MLE (``mfgan-wmle``, with its controls ``mfgan-wmle-one``, ``-mean``, ``-permuted``):
see :mod:`agents.experiments.zoo_adversarial`.

Every fine-tuned system is selected on validation NDCG@10 with its starting point among the
candidates (``MLEConfig.evaluate_start``, ``AdversarialConfig.evaluate_start``): adversarial
fine-tuning can therefore never end worse *on validation* than the model it started from.
``benchmarks/reproduce.py`` builds the papers' tables from this module.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.checkpoint import forked_global_rng
from agents.experiments import zoo_adversarial as adversarial
from agents.experiments.zoo_config import ZooConfig
from agents.policy import SequencePolicy
from recgym._checks import is_int
from recgym.device import resolve_device
from recgym.recommenders import PopularityRecommender
from recgym.splits import Split

SPARSE_FILL = 0.25
"""Training windows less full than this on average count as sparse (``ZooConfig.sasrec_dropout``:
Amazon Beauty 0.12 and Sports 0.11; ML-100K 0.81, the synthetic default 0.53)."""


@dataclass
class FitResult:
    """A trained system.

    Attributes:
        name: the zoo name.
        recommender: ranks with ``recgym.evaluate`` (``score(history, user)``).
        max_len: the history window to evaluate it with.
        fit_seconds: wall time of this system's own training.
        total_seconds: ``fit_seconds`` plus the time of the cached starting point it reused.
        info: what its trainer reported (best epoch or round, validation NDCG@10, ...).
    """

    name: str
    recommender: Any
    max_len: int
    fit_seconds: float
    total_seconds: float
    info: dict[str, Any] = field(default_factory=dict)


class ModelZoo:
    """Fits the zoo's systems on one split with one seed, caching shared starting points.

    Args:
        split: the split (leave-one-out for the papers' protocol).
        config: sizes and budgets (``ZooConfig.quick()`` for a smoke run).
        seed: seeds every model's weights, batches, negatives and rollouts.
        device: where everything trains.
        progress: show a tqdm bar per fit (epochs or rounds, validation NDCG@10, ETA).
    """

    def __init__(
        self,
        split: Split,
        config: ZooConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        progress: bool = False,
    ) -> None:
        if not isinstance(split, Split):
            raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an int >= 0; got {seed!r}")
        self.split, self.seed = split, seed
        self.config = ZooConfig() if config is None else config
        self.device = resolve_device(device)
        self.progress = progress
        self._cache: dict[str, FitResult] = {}
        self._fit_seconds = 0.0  # wall time of every fit finished so far (nested ones included)

    def fit(self, name: str) -> FitResult:
        """Train system ``name`` (one of :data:`MODELS`); starting points are cached."""
        name = canonical_name(name)
        if name not in FITTERS:
            raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
        if name in self._cache:
            return self._cache[name]
        result = self._timed(name, FITTERS[name])
        if name in CACHED:
            self._cache[name] = result
        return result

    def fit_mfgan(self, **discriminator: Any) -> FitResult:
        """MFGAN from the cached SASRec MLE, with ``MultiFactorConfig`` overrides (not cached).

        The papers' variant, factor-removal and combination studies change only the
        discriminator; every variant starts from the same SASRec weights, so differences
        between variants are paired. ``fit_mfgan()`` is ``fit("mfgan")`` (policy-gradient
        mode) without the cache.
        """
        return self._timed("mfgan", lambda zoo: adversarial.mfgan(zoo, **discriminator))

    def _timed(self, name: str, fitter: Callable[[ModelZoo], Fitted]) -> FitResult:
        """Run ``fitter``; its ``fit_seconds`` leave out the starting points it fitted first
        (counted once, in ``total_seconds``)."""
        inner, tic = self._fit_seconds, time.perf_counter()
        recommender, info, base = fitter(self)
        elapsed = time.perf_counter() - tic
        seconds = elapsed - (self._fit_seconds - inner)  # minus the nested fits
        self._fit_seconds = inner + elapsed
        base_seconds = 0.0 if base is None else self._cache[base].total_seconds
        total = seconds + base_seconds
        return FitResult(name, recommender, self.config.max_len, seconds, total, info)

    def start_from(self, name: str) -> Any:
        """A deep copy of cached system ``name`` (fitting it first), to fine-tune in place."""
        return copy.deepcopy(self.fit(name).recommender)

    # ------------------------------------------------------------------ shared settings
    def mle_config(self, *, fresh_sasrec: bool = False, **overrides: Any):
        """The MLE settings of every sequential model (``mle_loss``, early stopping); with
        ``fresh_sasrec``, SASRec's from-scratch schedule (``sasrec_*``: warm-up + cosine, and
        no stop before it has decayed)."""
        from agents.mle import MLEConfig

        c = self.config
        settings = dict(
            epochs=c.mle_epochs, lr=c.lr, eval_every=c.eval_every, patience=c.patience,
            seed=self.seed, max_len=c.max_len, loss=c.mle_loss,
        )  # fmt: skip
        if fresh_sasrec:
            settings |= dict(
                lr=c.sasrec_lr, batch_size=self.sasrec_batch_size(), lr_schedule="cosine",
                batching=c.sasrec_batching, loss_dtype=c.sasrec_loss_dtype,
                compile_loss=c.sasrec_compile_loss,
                warmup_epochs=1.0, schedule_epochs=c.sasrec_schedule_epochs,
                min_epochs=c.sasrec_min_epochs,
            )  # fmt: skip
        return MLEConfig(**(settings | overrides))

    def monitor(self) -> Any:
        """The test monitor every trainer gets under ``ZooConfig.monitor_test`` (else None)."""
        if not self.config.monitor_test:
            return None
        from agents.early_stopping import test_monitor

        return test_monitor(self.split, max_len=self.config.max_len, device=self.device)

    def sasrec_batch_size(self) -> int:
        """``sasrec_batch_size``, or the automatic one: ``sasrec_batch_targets`` divided by the
        mean training targets per window, clamped to 64..256."""
        if self.config.sasrec_batch_size is not None:
            return self.config.sasrec_batch_size
        per_window = self._window_stats()[1]
        return int(min(256, max(64, round(self.config.sasrec_batch_targets / max(per_window, 1)))))

    def _window_stats(self) -> tuple[float, float]:
        """``(fill, targets per window)`` of the training windows, computed once per zoo."""
        if "_window_stats_cache" not in self.__dict__:
            from agents.sequences import training_windows

            inputs, targets = training_windows(self.split, self.config.max_len)
            fill = float((inputs != 0).float().mean()) if inputs.numel() else 1.0
            per_window = float((targets > 0).sum()) / max(len(inputs), 1)
            self.__dict__["_window_stats_cache"] = (fill, per_window)
        return self.__dict__["_window_stats_cache"]

    def adversarial_config(self, **overrides: Any):
        """The MFGAN / EB-SeqGAN loop settings (start evaluated, best-on-validation kept)."""
        from agents.adversarial_config import AdversarialConfig

        c = self.config
        settings = dict(
            n_rounds=c.adversarial_rounds, g_steps=1, d_steps=1,
            pretrain_reward_epochs=c.reward_pretrain_epochs, eval_every=c.eval_every,
            rollout_batch_size=256, horizon=5, max_len=c.max_len, d_batch_size=256,
            policy_lr=1e-4, disc_lr=1e-3, seed=self.seed, exclude_seen=True,
            progress=self.progress,
        )  # fmt: skip
        return AdversarialConfig(**(settings | overrides))

    def sasrec_dropout(self) -> float:
        """``sasrec_dropout``, or by sparsity: 0.5 when the training windows are on average
        less than a quarter full, else 0.2 (the SASRec paper's two settings)."""
        if self.config.sasrec_dropout is not None:
            return float(self.config.sasrec_dropout)
        return 0.5 if self._window_stats()[0] < SPARSE_FILL else 0.2

    def new_policy(self, kind: str) -> SequencePolicy:
        """A freshly initialised SASRec (2 blocks, 1 head, :meth:`sasrec_dropout`) or GRU4Rec
        policy."""
        n_items, c = self.split.dataset.n_items, self.config
        dropout = self.sasrec_dropout() if kind == "sasrec" else None
        with forked_global_rng(self.seed):
            if kind == "sasrec":
                from agents.sasrec import SASRecConfig, SASRecPolicy

                config = SASRecConfig(
                    max_len=c.max_len, dim=c.dim, n_blocks=2, n_heads=1, dropout=dropout
                )
                return SASRecPolicy(config, n_items=n_items)
            from agents.gru import GRUConfig, GRUPolicy

            config = GRUConfig(max_len=c.max_len, dim=c.dim, hidden_size=c.dim)
            return GRUPolicy(config, n_items=n_items)


# ---------------------------------------------------------------------- the systems
Fitted = tuple[Any, dict[str, Any], str | None]
"""``(recommender, info, name of the cached starting point or None)``."""


def _popularity(zoo: ModelZoo) -> Fitted:
    return PopularityRecommender.fit(zoo.split, device=zoo.device), {}, None


def _bpr(zoo: ModelZoo) -> Fitted:
    from agents.baselines.bpr import BPRConfig, BPRTrainer
    from agents.baselines.mf import BPRMFRecommender

    model = BPRMFRecommender.for_split(zoo.split, dim=zoo.config.dim, seed=zoo.seed)
    config = BPRConfig(epochs=zoo.config.mf_epochs, seed=zoo.seed, patience=_mf_patience(zoo))
    trainer = BPRTrainer(model, zoo.split, config, device=zoo.device, progress=zoo.progress)
    return model, _mle_info(trainer.fit()), None


def _apr(zoo: ModelZoo) -> Fitted:
    from agents.baselines.apr import APRConfig, APRTrainer

    model = zoo.start_from("bpr-mf")
    config = APRConfig(
        epochs=zoo.config.apr_epochs, seed=zoo.seed, patience=_mf_patience(zoo), eps=0.5, lam=1.0
    )
    trainer = APRTrainer(model, zoo.split, config, device=zoo.device, progress=zoo.progress)
    return model, _mle_info(trainer.fit()), "bpr-mf"


def _mf_patience(zoo: ModelZoo) -> int:
    # MF validation is noisier per epoch than MLE's: APR's code evaluates every epoch; we
    # evaluate every 5 and wait twice the MLE patience.
    return 2 * zoo.config.patience


def _mle(kind: str) -> Callable[[ModelZoo], Fitted]:
    def fit(zoo: ModelZoo) -> Fitted:
        from agents.mle import MLETrainer

        policy = zoo.new_policy(kind)
        trainer = MLETrainer(
            policy, zoo.split, zoo.mle_config(fresh_sasrec=kind == "sasrec"),
            device=zoo.device, progress=zoo.progress, monitor=zoo.monitor(),
        )  # fmt: skip
        result = trainer.fit()
        return policy, _mle_info(result), None

    return fit


def _sao(zoo: ModelZoo) -> Fitted:
    from agents.perturbation import PerturbationConfig

    return _continue_sasrec(zoo, PerturbationConfig(eps=zoo.config.sao_eps, lam=1.0))


def _continue_sasrec(zoo: ModelZoo, perturbation: Any = None) -> Fitted:
    """SASRec MLE continued for ``sao_epochs`` from the cached early-stopped weights.

    With ``perturbation`` this is SAO; without it, SAO's control: the same extra epochs,
    the same model selection (the start is evaluated and kept if no epoch beats it), no
    adversary. SAO's gain over SASRec mixes both effects; its gain over the control is the
    adversary's.
    """
    from agents.mle import MLETrainer

    policy = zoo.start_from("sasrec")
    config = zoo.mle_config(epochs=zoo.config.sao_epochs, evaluate_start=True)
    trainer = MLETrainer(
        policy, zoo.split, config, device=zoo.device, perturbation=perturbation,
        progress=zoo.progress, monitor=zoo.monitor(),
    )  # fmt: skip
    result = trainer.fit()
    start = result.history.loc[result.history["epoch"] == 0, "eval/NDCG@10"]
    info = _mle_info(result) | {"valid_ndcg10_start": float(start.iloc[0])}
    return policy, info, "sasrec"


def _acvae(zoo: ModelZoo) -> Fitted:
    from agents.baselines.acvae.model import ACVAEConfig, ACVAEPolicy
    from agents.baselines.acvae.training import ACVAETrainer, ACVAETrainingConfig

    c = zoo.config
    quick = c.dim < 64  # the official sizes (embeddings 128, latent 64) unless smoke-sized
    model_config = ACVAEConfig(max_len=c.max_len, **(dict(embed_dim=c.dim, hidden_dim=c.dim,
                               latent_dim=c.dim) if quick else {}))  # fmt: skip
    model = ACVAEPolicy(model_config, n_items=zoo.split.dataset.n_items, seed=zoo.seed)
    config = ACVAETrainingConfig(
        epochs=c.acvae_epochs, eval_every=c.eval_every, patience=c.patience, seed=zoo.seed
    )
    return (
        model,
        _mle_info(
            ACVAETrainer(model, zoo.split, config, device=zoo.device, progress=zoo.progress).fit()
        ),
        None,
    )


def _mle_info(result: Any) -> dict[str, Any]:
    from agents.early_stopping import monitor_info

    return {
        "best_epoch": result.best_epoch,
        "valid_ndcg10": result.best_metrics.get("eval/NDCG@10", float("nan")),
        "epochs_run": int(result.history["epoch"].max()),
    } | monitor_info(result.history)


FITTERS: dict[str, Callable[[ModelZoo], Fitted]] = {
    "popularity": _popularity,
    "bpr-mf": _bpr,
    "apr": _apr,
    "gru4rec": _mle("gru"),
    "sasrec": _mle("sasrec"),
    "sao": _sao,
    "sasrec-continued": _continue_sasrec,
    "acvae": _acvae,
    "mfgan": adversarial.mfgan,
    "mfgan-wmle": adversarial.mfgan_wmle("discriminator"),
    "mfgan-wmle-one": adversarial.mfgan_wmle("one"),
    "mfgan-wmle-mean": adversarial.mfgan_wmle("batch_mean"),
    "mfgan-wmle-permuted": adversarial.mfgan_wmle("permuted"),
    "ebseqgan": adversarial.ebseqgan,
}
"""Zoo name -> fitter. ``benchmarks/reproduce.py`` lists them in the papers' order."""
CACHED = frozenset({"sasrec", "gru4rec", "bpr-mf"})
"""Systems other systems start from: kept after their first fit."""
MODELS = tuple(FITTERS)
ALIASES: dict[str, str] = {"asasrec": "sao", "ebgan": "ebseqgan"}
"""Former zoo names (and the CLI's former ``ebgan``), accepted for one release."""


def canonical_name(name: str) -> str:
    """Today's name of a system (former names translated, with a ``DeprecationWarning``)."""
    if name in ALIASES:
        warnings.warn(f"model {name!r} is now {ALIASES[name]!r}", DeprecationWarning, stacklevel=3)
        return ALIASES[name]
    return name
