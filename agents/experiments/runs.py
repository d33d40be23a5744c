"""What ``recgym train`` runs: data loading, the training phases, and run checkpoints.

``agents.experiments.cli`` parses arguments and prints; this module does the work, so a notebook
or script can call the same phases (``mle_phase``, ``sao_phase``, ``reinforce_phase``,
``adversarial_phase``) and read or write the same checkpoints (``save_run`` / ``load_run``,
atomic and ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from agents.distributed import save_on_main
from agents.distributed.training import gather_rank_states, own_rank_state
from agents.experiments.config_files import (
    RunSettings,
    build_config,
)
from recgym._torch_io import (
    atomic_torch_save,
    canonical_key,
    config_to_dict,
    module_payload,
    read_weights_only,
    rebuild_module,
)
from recgym.data import SequenceDataset
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.errors import RecGymError
from recgym.evaluation import evaluate
from recgym.recommenders import PopularityRecommender
from recgym.reference import HitReward, OracleReward
from recgym.splits import Split, leave_one_out
from recgym.synthetic import SyntheticConfig, make_synthetic

CHECKPOINT_FORMAT = "recgym.agents.cli/1"
"""A format tag, not a module path: it stays as it is when files move."""
TEST_PROTOCOLS = ("full", "uniform-100")
POLICY_CLASSES = {"sasrec": "agents.sasrec:SASRecPolicy", "gru": "agents.gru:GRUPolicy"}
REWARD_CLASSES = {
    "multifactor": "rewards.multifactor:MultiFactorDiscriminator",
    "energy": "rewards.energy:EnergyDiscriminator",
}
"""Registry key -> class: the only classes a checkpoint may name (``weights_only`` loading never
runs pickled code). Files of older versions name classes by module path; they are translated with
``recgym._torch_io.LEGACY_KEYS``."""
LABELS = {"sasrec": "SASRec", "gru": "GRU4Rec"}


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class RunData:
    """A run's data: the dataset, its leave-one-out split and (synthetic) the true user model.

    Attributes:
        spec: how to rebuild it (stored in checkpoints): ``name``, ``data_dir``, ``download``,
            ``seed`` and ``synthetic`` (the generator's config as a dict, or ``None``).
    """

    dataset: SequenceDataset
    split: Split
    user_model: Any | None
    spec: dict[str, Any]


def load_run_data(
    spec: Mapping[str, Any], synthetic: Any = None, *, device: torch.device | str = "cpu"
) -> RunData:
    """Generate (``"synthetic"``) or load the data of ``spec``; split it leave-one-out.

    Args:
        spec: ``name`` (``"synthetic"``, a dataset name or a path), ``data_dir``,
            ``download`` and ``seed`` (of the synthetic generator).
        synthetic: a ``SyntheticConfig`` or its dict (``None`` = defaults).
        device: where the synthetic user model goes (the data stay on the CPU).
    """
    name, spec = spec["name"], dict(spec)
    if name == "synthetic":
        config = synthetic if isinstance(synthetic, SyntheticConfig) else None
        if config is None:
            config = build_config(SyntheticConfig, synthetic or {}, section="synthetic")
        data = make_synthetic(config, seed=int(spec["seed"]))
        spec["synthetic"] = config_to_dict(config)
        user_model = data.user_model.to(device)
        return RunData(data.dataset, leave_one_out(data.dataset), user_model, spec)
    from recgym.datasets import load_dataset

    if Path(name).expanduser().exists():  # a path: store it absolute for later commands
        spec["name"] = name = str(Path(name).expanduser().resolve())
    dataset = load_dataset(name, data_dir=spec.get("data_dir"), download=bool(spec.get("download")))
    spec["synthetic"] = None
    return RunData(dataset, leave_one_out(dataset), None, spec)


# ---------------------------------------------------------------------- train


def build_policy(settings: RunSettings, n_items: int):
    """The policy network of the run, its weights drawn from the run's ``seed``."""
    cls = _import(POLICY_CLASSES[settings.train.model])
    return cls(settings.model_config, n_items=n_items, seed=settings.train.seed)


STATE_FILES = {"mle": "mle_state.pt", "sao": "sao_state.pt", "reinforce": "reinforce_state.pt",
               "adversarial": "adversarial/last.pt"}  # fmt: skip
"""Each phase's resumable state under the run's output directory."""


def prepare_out_dir(out: Path, *, overwrite: bool) -> list[str]:
    """Check ``recgym train``'s output directory; returns the phases an earlier run left to
    resume (``[]`` for a fresh run).

    A finished run (``checkpoint.pt``) is never replaced without ``overwrite``; an interrupted one
    is resumed (``overwrite`` deletes its states and starts afresh).

    Raises:
        RecGymError: ``out`` holds a finished run and ``overwrite`` is false.
    """
    finished = out / "checkpoint.pt"
    states = {name: out / rel for name, rel in STATE_FILES.items() if (out / rel).exists()}
    if overwrite:
        for name, path in states.items():
            shutil.rmtree(path.parent) if name == "adversarial" else path.unlink()
        finished.unlink(missing_ok=True)
        return []
    if finished.exists():
        raise RecGymError(
            f"{out} already holds a finished run ({finished.name}); pass --overwrite to replace "
            "it, or --out another directory"
        )
    return list(states)


def mle_phase(policy, data: RunData, settings: RunSettings, device) -> pd.DataFrame:
    """Maximum-likelihood (pre-)training with early stopping on validation NDCG@10; resumable
    from ``<out>/mle_state.pt`` (written every epoch)."""
    from agents.mle import MLETrainer

    state_path = settings.out_dir / STATE_FILES["mle"]
    trainer = MLETrainer(policy, data.split, settings.configs["mle"], device=device,
                         progress=settings.train.progress, state_path=state_path)  # fmt: skip
    return trainer.fit().history


def sao_phase(policy, data: RunData, settings: RunSettings, device):
    """APR / SAO: more MLE epochs under adversarial embedding perturbations."""
    from agents.mle import MLETrainer

    epochs = settings.train.rounds or 3
    config = dataclasses.replace(settings.configs["mle"], epochs=epochs)
    perturbation = settings.configs["perturbation"]
    trainer = MLETrainer(policy, data.split, config, device=device, perturbation=perturbation,
                         progress=settings.train.progress,
                         state_path=settings.out_dir / STATE_FILES["sao"])  # fmt: skip
    return trainer.fit().history, None


def reinforce_phase(policy, data: RunData, settings: RunSettings, device):
    """REINFORCE on the true user's log-likelihood (synthetic) or logged-item hits."""
    from agents.reinforce import PolicyGradientTrainer

    pg, seed = settings.configs["reinforce"], settings.train.seed
    reward_fn = HitReward() if data.user_model is None else OracleReward(data.user_model)
    config = EnvConfig(max_len=policy.max_len, horizon=pg.n_steps, stage="train", start="random")
    env = BatchedRecEnv(data.split, reward_fn, config, batch_size=pg.batch_size, device=device,
                        seed=seed)  # fmt: skip
    trainer = PolicyGradientTrainer(policy, env, pg, device=device, seed=seed)
    state_path, rows = settings.out_dir / STATE_FILES["reinforce"], []
    if state_path.exists():  # an interrupted run: its weights, optimiser, generators, rows
        state = read_weights_only(state_path)
        policy.load_state_dict(state["policy"])
        trainer.load_state_dict(state["trainer"])  # every rollout reseeds the env from it
        if trainer.distributed or "ranks" in state:  # each rank's own generator
            mine = own_rank_state(state.get("ranks", [{}]), path=str(state_path))
            trainer.generator.set_state(mine["generator"])
        rows = state["rows"]
    for i in range(len(rows), settings.train.rounds or 20):
        rows.append({"update": i + 1, **trainer.step()})
        ranks = ({"ranks": gather_rank_states({"generator": trainer.generator.get_state()})}
                 if trainer.distributed else {})  # fmt: skip
        save_on_main({"policy": policy.state_dict(), "trainer": trainer.state_dict(),
                      "rows": rows, **ranks}, state_path)  # fmt: skip
    return pd.DataFrame(rows), None


def adversarial_phase(policy, data: RunData, settings: RunSettings, device):
    """MFGAN / EB-SeqGAN rounds against a multi-factor / energy reward model."""
    from agents.adversarial import AdversarialTrainer

    configs, seed = settings.configs, settings.train.seed
    if settings.train.algo == "mfgan":
        from rewards.multifactor import MultiFactorDiscriminator

        factors = data.split.factors()
        reward_model = MultiFactorDiscriminator(configs["multifactor"], factors, seed=seed)
    else:
        from rewards.energy import EnergyDiscriminator

        n_items = data.dataset.n_items
        reward_model = EnergyDiscriminator(configs["energy"], n_items=n_items, seed=seed)
    adversarial = configs["adversarial"]
    if adversarial.checkpoint_dir is None:
        adversarial = dataclasses.replace(
            adversarial, checkpoint_dir=str(settings.out_dir / "adversarial")
        )
    kwargs = dict(device=device, user_model=data.user_model, mle_config=configs["mle"],
                  pretrain_config=configs["pretrain"])  # fmt: skip
    last = Path(adversarial.checkpoint_dir) / "last.pt"
    if last.exists():  # an interrupted run: every weight, optimiser and generator from the file
        trainer = AdversarialTrainer.resume(last, policy, reward_model.to(device), data.split,
                                            adversarial, **kwargs)  # fmt: skip
    else:
        trainer = AdversarialTrainer(policy, reward_model.to(device), data.split, adversarial,
                                     **kwargs)  # fmt: skip
    history = trainer.train()
    trainer.restore_best()  # the policy with the best validation NDCG@10 (round 0 included)
    return history, reward_model


PHASES = {
    "sao": sao_phase,
    "reinforce": reinforce_phase,
    "mfgan": adversarial_phase,
    "ebseqgan": adversarial_phase,
}


def reference_metrics(data: RunData, settings: RunSettings, device) -> tuple[dict, dict]:
    """Test metrics of popularity and (synthetic) the true user model."""
    frames: dict[str, pd.DataFrame] = {}
    quality: dict[str, float] = {}
    popularity = PopularityRecommender.fit(data.split, device=device)
    policy_metrics("popularity", popularity, data, settings, device, frames, quality)
    if data.user_model is not None:
        policy_metrics("oracle (true user)", data.user_model, data, settings, device, frames,
                        quality)  # fmt: skip
    return frames, quality


def policy_metrics(name, policy, data: RunData, settings, device, frames, quality) -> None:
    """Add ``policy``'s test metrics (and, synthetic, its oracle log-likelihood) under ``name``."""
    max_len = settings.model_config.max_len
    frames[name] = evaluate(
        policy, data.split, "test", protocols=TEST_PROTOCOLS, ks=(10,), max_len=max_len,
        device=device, seed=settings.train.seed,
    )  # fmt: skip
    if data.user_model is not None:
        from agents.quality import oracle_continuation_loglik

        quality[name] = oracle_continuation_loglik(
            policy, data.user_model, data.split, n_steps=5, max_len=max_len,
            seed=settings.train.seed,
        )  # fmt: skip


# ---------------------------------------------------------------------- checkpoints
def save_run(settings, data: RunData, policy, reward_model, metrics, histories) -> Path:
    """Write ``<out>/checkpoint.pt`` atomically, plus ``metrics.csv`` and ``history_*.csv``."""
    out = settings.out_dir
    payload = {
        "format": CHECKPOINT_FORMAT,
        "algo": settings.train.algo,
        "policy_name": LABELS[settings.train.model],
        "model": settings.train.model,
        "data": data.spec,
        "policy": module_payload(policy),
        "reward_model": None if reward_model is None else module_payload(reward_model),
        "configs": {"train": config_to_dict(settings.train)}
        | {name: config_to_dict(c) for name, c in settings.configs.items()},
        "metrics": {
            f"{r.protocol}/{r.metric}" + ("" if pd.isna(r.k) else f"@{int(r.k)}"): float(r.value)
            for r in metrics.itertuples()
        },
    }
    path = atomic_torch_save(payload, out / "checkpoint.pt")
    metrics.to_csv(out / "metrics.csv", index=False)
    for name, history in histories.items():
        history.to_csv(out / f"history_{name}.csv", index=False)
    return path


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``recgym train`` checkpoint with ``weights_only=True`` and check its format."""
    payload = read_weights_only(path, hint="write one with `recgym train`")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RecGymError(
            f"{str(path)!r} is not a `recgym train` checkpoint (format {CHECKPOINT_FORMAT}); "
            "policies saved with SequencePolicy.save load with that class's .load"
        )
    missing = [key for key in _RUN_KEYS if key not in payload]
    if missing:
        raise RecGymError(f"checkpoint {str(path)!r} lacks the entries {missing}: written by "
                          "another program or damaged; rerun `recgym train`")  # fmt: skip
    return payload


_RUN_KEYS = ("algo", "model", "data", "policy", "reward_model", "configs", "metrics")


def rebuild_policy(entry: Mapping[str, Any], *, device: torch.device):
    """The policy of a checkpoint entry (only the classes of :data:`POLICY_CLASSES`)."""
    return _rebuild(entry, POLICY_CLASSES, device)


def rebuild_reward_model(entry: Mapping[str, Any], *, device: torch.device):
    """The reward model of a checkpoint entry (only the classes of :data:`REWARD_CLASSES`)."""
    return _rebuild(entry, REWARD_CLASSES, device)


def _rebuild(entry: Mapping[str, Any], allowed: Mapping[str, str], device: torch.device):
    name = canonical_key(entry.get("class"))
    if name not in allowed:
        raise RecGymError(
            f"checkpoint holds a {entry.get('class')!r}; expected one of {sorted(allowed)}"
        )
    cls = _import(allowed[name])
    config = build_config(cls.config_class, entry["config"], section=name)
    model = rebuild_module(cls, entry, source="checkpoint", config=config)
    return model.to(device).eval()


def _import(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------- evaluate
