"""The seed papers' analyses: APR's robustness, MFGAN's discriminator studies, ACVAE's ablations.

``apr``: the relative NDCG@10 drop (test, full ranking) of MF-BPR and APR when their whole
embedding tables move by adversarial vs random perturbations of per-vector norm ε ∈ {0.5, 1, 2}
(APR, Section 3.2), mean ± std over seeds.

``acvae``: ACVAE and its ablations (without AVB, without the contrastive term, without the CNN):
test NDCG@10 under the three protocols and the latent correlation of each.

``mfgan``: MFGAN's variant table (multi-factor bidirectional vs uni-directional vs SDSF vs SDAF),
factor-removal study and combination study (min / mean / max / soft λ), measured on the
**discriminator**: validation AUC of telling real training sequences from sequences whose newest
item is replaced by a popularity-sampled one (``rewards.ReplaceLastSampler``), after
pre-training with early stopping on 5,000 random training prefixes. The paper reports these
studies as the *generator's* recommendation metrics after adversarial training (that is
``mfgan-generator``); this measures the part of the claim that the discriminators see the
difference, cheaply (see docs/results.md).

``mfgan-generator``: the same studies at the paper's level: every distinct discriminator
configuration is trained adversarially against a copy of the *same* SASRec MLE start
(``ModelZoo.fit_mfgan``), and the generator's test NDCG@10 is reported with its paired
difference from that start. Rows are appended to ``--out`` as they finish, and a rerun skips
finished (config, seed) rows: the study is long (13 adversarial trainings per seed on ML-100K).

Usage::

    python benchmarks/analyses.py apr --data ml-100k --seeds 0 1 2
    python benchmarks/analyses.py mfgan --data ml-100k --seeds 0 1 2
    python benchmarks/analyses.py acvae --data ml-100k --seeds 0 --epochs 40
    python benchmarks/analyses.py mfgan --quick          # smoke: synthetic data, one epoch
    python benchmarks/analyses.py mfgan-generator --data ml-100k --seeds 0 \
        --out runs/mfgan-generator.csv
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import torch

from agents.baselines.apr import perturbation_robustness
from agents.experiments.zoo import ModelZoo, ZooConfig
from recgym import leave_one_out
from recgym.synthetic import SyntheticConfig, make_synthetic
from rewards import (
    MultiFactorConfig,
    MultiFactorDiscriminator,
    PretrainConfig,
    ReplaceLastSampler,
    pretrain_discriminator,
    real_sequences,
)

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("analysis", choices=("apr", "mfgan", "mfgan-generator", "acvae"))
    parser.add_argument("--epochs", type=int, default=40, help="ACVAE epochs per ablation")
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="CSV of the per-seed rows")
    parser.add_argument("--rounds", type=int, default=None, help="mfgan-generator: rounds")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="mfgan-generator: only these config labels, in this order",
    )
    parser.add_argument("--quick", action="store_true", help="synthetic data, tiny budgets")
    return parser.parse_args(argv)


def load_split(args: argparse.Namespace):
    if args.quick:
        config = SyntheticConfig(n_users=200, n_items=150)
        return leave_one_out(make_synthetic(config, seed=0).dataset)
    from recgym.datasets import load_dataset

    return leave_one_out(load_dataset(args.data, data_dir=args.data_dir))


# ---------------------------------------------------------------------- APR
def apr_rows(split, seed: int, quick: bool) -> pd.DataFrame:
    """Robustness of MF-BPR and APR (trained by the zoo) under ε ∈ {0.5, 1, 2}."""
    zoo = ModelZoo(split, ZooConfig.quick() if quick else ZooConfig(), seed=seed)
    frames = []
    for name in ("bpr-mf", "apr"):
        frame = perturbation_robustness(zoo.fit(name).recommender, split, (0.5, 1.0, 2.0),
                                        seed=seed)  # fmt: skip
        frames.append(frame.assign(model=name, seed=seed))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------- MFGAN
STUDIES: dict[str, dict[str, dict]] = {
    "variant": {
        "multi, bidirectional (MFGAN)": {},
        "multi, uni-directional": {"causal": True, "n_blocks": 2},
        "multi, bidirectional, 2 blocks": {"n_blocks": 2},
        "SDSF (item id only)": {"variant": "sdsf"},
        "SDAF (all factors, one discriminator)": {"variant": "sdaf"},
    },
    "combination": {
        "min": {"combination": "min"},
        "mean": {"combination": "mean"},
        "max": {"combination": "max"},
        "soft λ = 1": {"combination": 1.0},
        "soft λ = -1": {"combination": -1.0},
    },
}
"""Study -> row label -> ``MultiFactorConfig`` overrides (factor removal is built per data)."""


N_REAL = 5_000
"""Real prefixes per discriminator (a random subset, the same for every configuration)."""


def study_configs(factors) -> dict[str, dict[str, dict]]:
    """:data:`STUDIES` plus the factor-removal study of ``factors`` (an ``ItemFactors``)."""
    names = tuple(f.name for f in factors.factors)
    studies = dict(STUDIES)
    studies["factor removal"] = {"all factors": {}} | {
        f"without {name}": {"factors": tuple(n for n in names if n != name)} for name in names
    }
    studies["factor removal"]["without item id"] = {"include_item_id": False}
    return studies


def mfgan_rows(split, seed: int, quick: bool) -> pd.DataFrame:
    """Pre-trained validation AUC of every discriminator configuration of the studies."""
    factors = split.factors()
    studies = study_configs(factors)
    max_len = 20 if quick else 50
    real = real_sequences(split, max_len)  # every training prefix: ~97k on ML-100K
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    real = real[order[: min(len(real), N_REAL)]]
    sampler = ReplaceLastSampler(split.dataset.n_items, "popularity", split.train_counts())
    pretrain = PretrainConfig(epochs=1 if quick else 4, patience=2, seed=seed)
    rows = []
    for study, configs in studies.items():
        for label, overrides in configs.items():
            config = MultiFactorConfig(max_len=max_len, dim=16 if quick else 64, **overrides)
            model = MultiFactorDiscriminator(config, factors, seed=seed)
            result = pretrain_discriminator(model, real, sampler, pretrain)
            rows.append({"study": study, "config": label, "seed": seed,
                         "valid_auc": result.best_auc, "epochs": result.best_epoch,
                         "seconds": float(result.history["seconds"].iloc[-1])})  # fmt: skip
            print(f"{study} / {label} seed={seed}: AUC {result.best_auc:.4f}", flush=True)
    return pd.DataFrame(rows)


GENERATOR_METRICS = ("full/NDCG@10", "full/HR@10", "uniform-100/NDCG@10", "popularity-100/NDCG@10")


def mfgan_generator_rows(split, seed: int, args: argparse.Namespace) -> pd.DataFrame:
    """Test metrics of MFGAN trained with every distinct discriminator of the studies."""
    config = ZooConfig.quick() if args.quick else ZooConfig()
    if args.rounds:
        config = ZooConfig(**{**config.__dict__, "mfgan_rounds": args.rounds})
    zoo = ModelZoo(split, config, seed=seed)
    path = Path(args.out) if args.out else None
    done = pd.read_csv(path) if path is not None and path.exists() else pd.DataFrame()
    if len(done):
        done = done[done["seed"] == seed]
    start = _generator_metrics(zoo.fit("sasrec"), split, seed)
    rows, fitted = [], {}  # identical configurations (e.g. "mean" = MFGAN) are trained once
    for study, label, overrides in _generator_plan(split, args.configs):
        key = "start" if overrides is None else repr(sorted(overrides.items()))
        row = {"study": study, "config": label, "seed": seed, "discriminator": key}
        same = done[done["discriminator"] == key] if len(done) else done
        if (same["config"] == label).any() if len(same) else False:
            rows.append(same[same["config"] == label].iloc[0].to_dict())
            continue
        if key not in fitted and len(same):  # trained in an earlier run under another label
            fitted[key] = same.iloc[0].drop(["study", "config", "seed", "discriminator"]).to_dict()
        if key == "start":
            row |= start | {"fit_s": 0.0}
        elif key in fitted:
            row |= fitted[key]
        else:
            fit = zoo.fit_mfgan(**overrides)
            fitted[key] = _generator_metrics(fit, split, seed) | {
                "best_round": fit.info["best_round"],
                "disc_auc_last": fit.info["disc_auc_last"], "fit_s": fit.fit_seconds,
            }  # fmt: skip
            row |= fitted[key]
        row["delta_full/NDCG@10"] = row["full/NDCG@10"] - start["full/NDCG@10"]
        rows.append(row)
        print(f"{study} / {label} seed={seed}: full NDCG@10 {row['full/NDCG@10']:.4f} "
              f"({row['delta_full/NDCG@10']:+.4f})", flush=True)  # fmt: skip
        if path is not None:
            _append_row(path, row)
    return pd.DataFrame(rows)


def _generator_plan(split, only: list[str] | None) -> list[tuple[str, str, dict | None]]:
    """``(study, label, overrides)`` rows: the start first, then ``only`` (in its order) or all."""
    plan = [(study, label, overrides) for study, configs in study_configs(split.factors()).items()
            for label, overrides in configs.items()]  # fmt: skip
    if only is not None:
        labels = [label for _, label, _ in plan]
        unknown = sorted(set(only) - set(labels))
        if unknown:
            raise ValueError(f"unknown --configs {unknown}; expected labels among {labels}")
        plan = [next(row for row in plan if row[1] == label) for label in only]
    return [("start", "SASRec MLE", None), *plan]


def _generator_metrics(fit, split, seed: int) -> dict[str, float]:
    from recgym.evaluation import evaluate

    frame = evaluate(fit.recommender, split, "test", protocols=("full", "uniform-100",
                     "popularity-100"), ks=(10,), max_len=fit.max_len, seed=seed)  # fmt: skip
    frame = frame[frame["k"] == 10]
    values = {f"{r.protocol}/{r.metric}@10": float(r.value) for r in frame.itertuples()}
    return {m: values[m] for m in GENERATOR_METRICS}


def _append_row(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(path) if path.exists() else pd.DataFrame()
    tmp = path.with_suffix(".tmp")
    pd.concat([old, pd.DataFrame([row])], ignore_index=True).to_csv(tmp, index=False)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- ACVAE
ACVAE_METRICS = ("full/NDCG@10", "uniform-100/NDCG@10", "popularity-100/NDCG@10")


def acvae_rows(split, seed: int, quick: bool, epochs: int = 40) -> pd.DataFrame:
    """ACVAE and its ablations: test NDCG@10 and the latent correlation of each."""
    from agents.baselines.acvae.analysis import latent_correlation
    from agents.baselines.acvae.model import ACVAEConfig, ACVAEPolicy
    from agents.baselines.acvae.training import (
        ABLATIONS,
        ACVAETrainer,
        ACVAETrainingConfig,
        ablation_configs,
    )
    from recgym.evaluation import evaluate

    sizes = dict(embed_dim=16, hidden_dim=16, latent_dim=8) if quick else {}
    rows = []
    for name in ABLATIONS:
        training = ACVAETrainingConfig(epochs=1 if quick else epochs, eval_every=2, patience=4,
                                       seed=seed)  # fmt: skip
        model_config, training = ablation_configs(
            name, ACVAEConfig(max_len=20 if quick else 50, **sizes), training
        )
        model = ACVAEPolicy(model_config, n_items=split.dataset.n_items, seed=seed)
        result = ACVAETrainer(model, split, training).fit()
        frame = evaluate(model, split, "test", protocols=("full", "uniform-100", "popularity-100"),
                         ks=(10,), max_len=model.max_len, seed=seed)  # fmt: skip
        values = frame[frame["metric"] == "NDCG"].set_index("protocol")["value"]
        row = {"ablation": name, "seed": seed, "best_epoch": result.best_epoch}
        row |= {f"{p}/NDCG@10": float(values[p]) for p in values.index}
        row["corr_dimensions"] = latent_correlation(model, split, between="dimensions")
        row["corr_users"] = latent_correlation(model, split, between="users")
        print(f"acvae {name} seed={seed}: {row}", flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame, analysis: str) -> str:
    if analysis == "apr":
        keys, values = ["model", "eps"], ["ndcg_clean", "drop_adversarial", "drop_random"]
    elif analysis == "acvae":
        keys, values = ["ablation"], [*ACVAE_METRICS, "corr_dimensions", "corr_users"]
    elif analysis == "mfgan-generator":
        keys = ["study", "config"]
        values = ["full/NDCG@10", "delta_full/NDCG@10", "uniform-100/NDCG@10"]
    else:
        keys, values = ["study", "config"], ["valid_auc"]
    grouped = frame.groupby(keys, sort=False)[values]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    lines = ["| " + " | ".join(keys + values) + " |", "|" + "---|" * (len(keys) + len(values))]
    for index in mean.index:
        cells = [
            f"{mean.loc[index, v]:.4f}"
            + (f" ± {std.loc[index, v]:.4f}" if count.loc[index, v] > 1 else "")
            for v in values
        ]
        labels = index if isinstance(index, tuple) else (index,)
        lines.append("| " + " | ".join(map(str, labels)) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = load_split(args)
    seeds = args.seeds[:1] if args.quick else args.seeds
    if args.analysis == "acvae":
        frames = [acvae_rows(split, seed, args.quick, args.epochs) for seed in seeds]
    elif args.analysis == "mfgan-generator":
        frames = [mfgan_generator_rows(split, seed, args) for seed in seeds]
    else:
        run = apr_rows if args.analysis == "apr" else mfgan_rows
        frames = [run(split, seed, args.quick) for seed in seeds]
    frame = pd.concat(frames, ignore_index=True)
    if args.out and args.analysis != "mfgan-generator":  # that one appends row by row
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    print(summary(frame, args.analysis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
