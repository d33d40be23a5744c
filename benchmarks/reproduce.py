"""Reproduce the seed papers' tables: every system of ``agents.experiments.zoo`` under one protocol.

Leave-one-out, test stage, all users, pessimistic ties; HR@10, NDCG@10 and MRR under full
ranking, uniform-100 and popularity-100 sampled negatives; mean ± std over seeds; fit times.
Each (dataset, model, seed) cell is appended to ``<out>/results.csv`` as soon as it finishes, and
a rerun skips finished cells, so an interrupted run resumes; two runs may share an ``<out>``
(rows another run appended meanwhile are kept). ``<out>/summary.md`` holds the tables
(rewritten after every cell). ``--models sasrec-continued`` adds SAO's control (SASRec trained for
SAO's extra epochs without the adversary). MFGAN runs in both generator modes from the same
SASRec start: ``mfgan`` (policy gradient) and ``mfgan-wmle`` (the official code's
discriminator-weighted MLE) with its controls ``mfgan-wmle-one``, ``mfgan-wmle-mean`` and
``mfgan-wmle-permuted``; ``summary.md`` pairs each with its start or control per seed
(:data:`PAIRS`: the adversary's contribution is ``mfgan-wmle - mfgan-wmle-permuted``).

Usage::

    python benchmarks/reproduce.py --quick                       # CI smoke: synthetic, seconds
    python benchmarks/reproduce.py --data ml-100k --seeds 0 1 2  # the ML-100K table
    python benchmarks/reproduce.py --data amazon-beauty --models popularity sasrec --seeds 0
    python benchmarks/reproduce.py --data sasrec:Beauty.txt?min_item_count=10 --models popularity
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from agents.experiments.zoo import ALIASES, MODELS, ModelZoo, ZooConfig, canonical_name
from recgym import leave_one_out
from recgym.evaluation import evaluate
from recgym.synthetic import SyntheticConfig, make_synthetic

PROTOCOLS = ("full", "uniform-100", "popularity-100")
METRICS = (("HR", 10), ("NDCG", 10), ("MRR", None))
DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)
KEYS = ["data", "model", "seed"]
ROBUSTNESS_MODELS = ("bpr-mf", "apr")
MFGAN = ("mfgan", "mfgan-wmle", "mfgan-wmle-one", "mfgan-wmle-mean", "mfgan-wmle-permuted")
MLE_BASED = ("gru4rec", "sasrec", "sao", "sasrec-continued", *MFGAN, "ebseqgan")
"""Systems whose numbers depend on ``--mle-loss`` (recorded in their rows)."""
PAIRS = (("sao", "sasrec-continued"), ("mfgan", "sasrec"), ("mfgan-wmle", "sasrec"),
         ("mfgan-wmle", "mfgan-wmle-permuted"), ("mfgan-wmle-one", "sasrec-continued"))  # fmt: skip
"""``summary.md``'s paired differences (same seed): a system against its start or its control;
``mfgan-wmle - mfgan-wmle-permuted`` is the adversary's contribution to weighted MLE."""
EPS = (0.5, 1.0, 2.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        nargs="+",
        default=["ml-100k"],
        help="datasets: synthetic, ml-100k, amazon-beauty, amazon-sports, a path, or "
        "sasrec:FILE[?min_item_count=10] (a file in SASRec's 'user item' pair format; a relative "
        "FILE is looked up in the working directory, then under --data-dir)",
    )
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=(*MODELS, *ALIASES),
        type=str,
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out-dir", default="runs/reproduce")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--no-progress", action="store_true", help="no tqdm bars (epoch, validation NDCG@10, ETA)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke setting: synthetic data, tiny budgets, one seed"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="override the rounds of EB-SeqGAN and MFGAN"
    )
    parser.add_argument(
        "--acvae-epochs", type=int, default=None, help="cap ACVAE's epochs (default: 200)"
    )
    parser.add_argument(
        "--mle-epochs", type=int, default=None, help="cap SASRec/GRU4Rec MLE epochs (default: 200)"
    )
    parser.add_argument(
        "--ks",
        nargs="+",
        type=int,
        default=[10],
        help="cut-offs recorded in results.csv (HR/NDCG/MRR@k; 10 always): APR's 50 100, "
        "ACVAE's 5 10 20; summary.md stays at @10",
    )
    parser.add_argument(
        "--mle-loss",
        choices=("ce", "bce"),
        default="ce",
        help="MLE loss of SASRec/GRU4Rec (bce: SASRec's, for large catalogues)",
    )
    parser.add_argument(
        "--monitor-test",
        action="store_true",
        help="also rank test at every validation and record the best of those scores "
        "(info/test_ndcg10_best_of_evals: what choosing on test would report; never selects)",
    )
    args = parser.parse_args(argv)
    args.models = [canonical_name(m) for m in args.models]  # former names (asasrec) accepted
    if args.quick:
        args.data, args.seeds = ["synthetic"], args.seeds[:1]
    return args  # fmt: skip


def load_split(name: str, data_dir: str, quick: bool):
    """The leave-one-out split of ``name`` (``synthetic``: the embedded generator)."""
    if name == "synthetic":
        size = dict(n_users=200, n_items=150) if quick else {}
        return leave_one_out(make_synthetic(SyntheticConfig(**size), seed=0).dataset)
    from recgym.datasets import load_dataset

    return leave_one_out(load_dataset(name, data_dir=data_dir))


def metric_rows(frame: pd.DataFrame, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """``{"full/HR@10": .., ...}`` from an ``evaluate`` frame: ``METRICS`` plus HR, NDCG and
    MRR at every other cut-off of ``ks``."""
    wanted = set(METRICS) | {(m, k) for k in ks if k != 10 for m in ("HR", "NDCG", "MRR")}
    out = {}
    for row in frame.itertuples():
        k = "" if pd.isna(row.k) else f"@{int(row.k)}"
        if (row.metric, None if k == "" else int(row.k)) in wanted:
            out[f"{row.protocol}/{row.metric}{k}"] = float(row.value)
    return out


def run_cell(
    zoo: ModelZoo, name: str, model: str, seed: int, device: str, ks: tuple[int, ...] = (10,)
) -> dict:
    fit = zoo.fit(model)
    tic = time.perf_counter()
    ks = tuple(sorted({10, *ks}))
    frame = evaluate(
        fit.recommender, zoo.split, "test", protocols=PROTOCOLS, ks=ks,
        max_len=fit.max_len, device=device, seed=seed,
    )  # fmt: skip
    row = {"data": name, "model": model, "seed": seed, **metric_rows(frame, ks)}
    row["mle_loss"] = zoo.config.mle_loss if model in MLE_BASED else ""
    row |= {"fit_s": fit.fit_seconds, "total_s": fit.total_seconds,
            "eval_s": time.perf_counter() - tic}  # fmt: skip
    row |= {f"info/{k}": v for k, v in fit.info.items()}
    if model in ROBUSTNESS_MODELS:  # APR's analysis: NDCG drop under perturbations of norm eps
        from agents.baselines.apr import perturbation_robustness

        frame = perturbation_robustness(fit.recommender, zoo.split, EPS, seed=seed, device=device)
        for r in frame.itertuples():
            row[f"robust/adv_drop@{r.eps:g}"] = r.drop_adversarial
            row[f"robust/random_drop@{r.eps:g}"] = r.drop_random
    return row


def summarise(results: pd.DataFrame) -> str:
    """Markdown tables (one per dataset): mean ± std over seeds."""
    columns = [f"{p}/{m}" + ("" if k is None else f"@{k}") for p in PROTOCOLS for m, k in METRICS]
    out = []
    for name, frame in results.groupby("data", sort=False):
        out.append(f"### {name}\n")
        header = ["model", "seeds"] + columns + ["fit s", "total s"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for model, cells in frame.groupby("model", sort=False):
            values = [_mean_std(cells[c], 4) for c in columns if c in cells]
            times = [_mean_std(cells[c], 0) for c in ("fit_s", "total_s")]
            out.append(f"| {model} | {len(cells)} | " + " | ".join(values + times) + " |")
        out.append("")
        out += _paired(frame)
    return "\n".join(out)


def _paired(frame: pd.DataFrame, column: str = "full/NDCG@10") -> list[str]:
    """Rows of :data:`PAIRS` present in ``frame``: per-seed differences of ``column``."""
    by_model = {m: cells.set_index("seed")[column] for m, cells in frame.groupby("model")}
    rows = []
    for system, base in PAIRS:
        if system not in by_model or base not in by_model:
            continue
        diff = (by_model[system] - by_model[base]).dropna()
        if len(diff):
            per_seed = ", ".join(f"{d:+.4f}" for d in diff)
            rows.append(f"| {system} − {base} | {len(diff)} | {per_seed} | {diff.mean():+.4f} |")
    if not rows:
        return []
    return [f"| paired (same seed) | seeds | {column} per seed | mean |", "|---|---|---|---|",
            *rows, ""]  # fmt: skip


def _mean_std(values: pd.Series, digits: int) -> str:
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    results = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=KEYS)
    check_same_loss(results, args.mle_loss, path)
    config = ZooConfig.quick() if args.quick else ZooConfig()
    overrides = {"mle_loss": args.mle_loss, "monitor_test": args.monitor_test}
    rounds = {"adversarial_rounds": args.rounds, "mfgan_rounds": args.rounds}
    overrides |= rounds if args.rounds else {}
    overrides |= {} if args.acvae_epochs is None else {"acvae_epochs": args.acvae_epochs}
    overrides |= {} if args.mle_epochs is None else {"mle_epochs": args.mle_epochs}
    config = ZooConfig(**(config.__dict__ | overrides))
    print(f"results: {path} (a row per cell as it finishes; a rerun resumes), "
          f"tables: {out / 'summary.md'}", flush=True)  # fmt: skip
    n_cells, cell, tic = len(args.data) * len(args.seeds) * len(args.models), 0, time.perf_counter()
    for name in args.data:
        split = load_split(name, args.data_dir, args.quick)
        for seed in args.seeds:
            zoo = ModelZoo(split, config, seed=seed, device=args.device,
                           progress=not args.no_progress)  # fmt: skip
            for model in args.models:
                cell += 1
                # another run may share this table: re-read before and after each cell
                results = pd.read_csv(path) if path.exists() else results
                if (name, model, str(seed)) in set(map(tuple, results[KEYS].astype(str).values)):
                    continue
                print(f"[{cell}/{n_cells}] {name} {model} seed={seed}", flush=True)
                row = run_cell(zoo, name, model, seed, args.device, tuple(args.ks))
                print(f"[{cell}/{n_cells}] {name} {model} seed={seed}: full NDCG@10 "
                      f"{row['full/NDCG@10']:.4f}, fit {row['fit_s']:.0f} s, "
                      f"{time.perf_counter() - tic:.0f} s so far", flush=True)  # fmt: skip
                results = pd.read_csv(path) if path.exists() else results
                results = pd.concat([results, pd.DataFrame([row])], ignore_index=True)
                _atomic_write(path, results.to_csv(index=False))
                _atomic_write(out / "summary.md", summarise(results))
    print(summarise(results))
    print(f"wrote {path} and {out / 'summary.md'}")
    return 0


def check_same_loss(results: pd.DataFrame, mle_loss: str, path: Path) -> None:
    """Refuse to resume a table whose MLE-based rows were trained with another loss."""
    rows = results[results["model"].isin(MLE_BASED)] if "model" in results else results
    if not len(rows):
        return
    # files written before the column existed hold CE rows
    losses = set(rows.get("mle_loss", pd.Series(["ce"] * len(rows))).fillna("ce"))
    if losses != {mle_loss}:
        raise ValueError(
            f"{path} holds rows trained with --mle-loss {sorted(losses)}, not {mle_loss!r}; "
            "a table must use one loss: pass another --out-dir"
        )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
