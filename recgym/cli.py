"""The ``recgym`` command line.

``recgym`` (= ``recgym demo``) runs the main job on the embedded synthetic data: it generates the
dataset from its ground-truth user model, evaluates reference recommenders (random, popularity,
the true user model) under full ranking and sampled protocols, and rolls out policies in the
batched environment under the hit and oracle rewards. ``recgym data`` prints a dataset's
statistics; ``recgym reference popularity|random`` evaluates a reference recommender on any
dataset. The training commands (``train``, ``evaluate CKPT``, ``rollout CKPT``) join these in the
one ``recgym`` parser of ``agents.experiments.cli``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pandas as pd
import torch

from recgym.data import SequenceDataset
from recgym.env import BatchedRecEnv
from recgym.env_config import EnvConfig
from recgym.evaluation import evaluate
from recgym.recommenders import PopularityRecommender, RandomRecommender
from recgym.reference import HitReward, OracleReward
from recgym.rollout import RecommenderPolicy, UniformPolicy, rollout
from recgym.splits import Split, leave_one_out
from recgym.synthetic import SyntheticConfig, make_synthetic

SUMMARY_METRICS = (("HR", 10), ("NDCG", 10), ("MRR", None))


def summary_table(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per recommender, columns ``protocol / metric`` for HR@10, NDCG@10 and MRR."""
    rows = {}
    for name, df in frames.items():
        row = {}
        for protocol in df["protocol"].unique():
            for metric, k in SUMMARY_METRICS:
                sel = (df["protocol"] == protocol) & (df["metric"] == metric)
                sel &= df["k"].isna() if k is None else (df["k"] == k)
                label = f"{metric}@{k}" if k else metric
                row[(protocol, label)] = float(df.loc[sel, "value"].iloc[0])
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def run_demo(args: argparse.Namespace) -> None:
    """Generate synthetic data, evaluate reference recommenders, roll out policies."""
    t0 = time.perf_counter()
    config = SyntheticConfig(n_users=args.users, n_items=args.items)
    data = make_synthetic(config, seed=args.seed, device=args.device)
    print(f"== synthetic dataset (seed {args.seed}, {time.perf_counter() - t0:.2f} s)")
    print(data.dataset, "\n")

    split = leave_one_out(data.dataset)
    recommenders = {
        "random": RandomRecommender.fit(split, seed=args.seed, device=args.device),
        "popularity": PopularityRecommender.fit(split, device=args.device),
        "true user model (oracle)": data.user_model,
    }
    t0 = time.perf_counter()
    frames = {
        name: evaluate(rec, split, "test", device=args.device, seed=args.seed)
        for name, rec in recommenders.items()
    }
    print(
        f"== leave-one-out test, all {split.n_targets('test')} users, pessimistic ties "
        f"({time.perf_counter() - t0:.2f} s)"
    )
    print(summary_table(frames).round(4).to_string(), "\n")

    print(
        f"== batched env rollouts: {args.num_envs} sessions x {args.horizon} steps "
        "from random cuts of training histories"
    )
    print(rollout_table(split, data.user_model, args).round(4).to_string())


def rollout_table(split: Split, oracle, args: argparse.Namespace) -> pd.DataFrame:
    """Mean hit reward, oracle log-prob reward, coverage and speed for three policies."""
    env_config = EnvConfig(max_len=50, horizon=args.horizon, stage="train", start="random")
    policies = {
        "uniform": UniformPolicy(split.dataset.n_items),
        "popularity (greedy)": RecommenderPolicy(
            PopularityRecommender.fit(split, device=args.device)
        ),
        "true user (sampled)": RecommenderPolicy(oracle, greedy=False),
    }
    rewards = {"hit": HitReward(), "oracle log p": OracleReward(oracle, log=True)}
    rows = {}
    for name, policy in policies.items():
        row = {}
        for reward_name, reward_fn in rewards.items():
            env = BatchedRecEnv(
                split,
                reward_fn,
                env_config,
                batch_size=args.num_envs,
                device=args.device,
                seed=args.seed,
            )
            generator = torch.Generator(device=env.device).manual_seed(args.seed)
            t0 = time.perf_counter()
            result = rollout(env, policy, seed=args.seed, generator=generator)
            elapsed = time.perf_counter() - t0
            metrics = result.metrics()
            row[f"{reward_name} reward"] = metrics["reward/mean"]
            row["coverage"], row["gini"] = metrics["coverage"], metrics["gini"]
            row[f"steps/s ({reward_name})"] = args.num_envs * args.horizon / elapsed
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def load_data(name: str, data_dir: str | None, download: bool, seed: int) -> SequenceDataset:
    """``"synthetic"`` or anything :func:`recgym.datasets.load_dataset` accepts."""
    if name == "synthetic":
        return make_synthetic(seed=seed).dataset
    from recgym.datasets import load_dataset

    return load_dataset(name, data_dir=data_dir, download=download)


def run_data(args: argparse.Namespace) -> None:
    """Print a dataset's statistics, factors and leave-one-out segment sizes."""
    t0 = time.perf_counter()
    dataset = load_data(args.data, args.data_dir, args.download, args.seed)
    print(f"{dataset}  (loaded in {time.perf_counter() - t0:.2f} s)")
    for key, value in dataset.stats().items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    split = leave_one_out(dataset)
    print("factors (with training popularity):")
    print("  " + split.factors().describe().replace("\n", "\n  "))
    print("leave-one-out segments:", split.segment_sizes())


def run_reference(args: argparse.Namespace) -> None:
    """Evaluate a reference recommender on a dataset and print the tidy metrics."""
    dataset = load_data(args.data, args.data_dir, args.download, args.seed)
    split = leave_one_out(dataset)
    if args.model == "popularity":
        model = PopularityRecommender.fit(split, device=args.device)
    else:
        model = RandomRecommender.fit(split, seed=args.seed, device=args.device)
    df = evaluate(
        model,
        split,
        args.stage,
        protocols=args.protocols,
        ks=args.ks,
        device=args.device,
        seed=args.seed,
    )
    print(df.to_string(index=False))


REFERENCE_MODELS = ("popularity", "random")
"""``recgym reference <name>`` evaluates one of these (formerly ``recgym evaluate <name>``)."""


def add_commands(sub) -> dict:  # noqa: D417 - sub: argparse's subparsers action
    """Add ``demo``, ``data`` and ``reference`` to an argparse subparsers object.

    Returns:
        command name -> handler taking the parsed ``argparse.Namespace``.
    """
    demo = sub.add_parser("demo", help="the main job on the embedded synthetic data (default)")
    demo.add_argument("--users", type=int, default=2000)
    demo.add_argument("--items", type=int, default=500)
    demo.add_argument("--num-envs", type=int, default=1024)
    demo.add_argument("--horizon", type=int, default=10)
    for p in (demo,) + tuple(_data_parsers(sub)):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (never a fallback)")
    return dict(HANDLERS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``recgym`` commands of this layer (no training)."""
    parser = argparse.ArgumentParser(prog="recgym", description=__doc__.splitlines()[0])
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def _data_parsers(sub) -> list[argparse.ArgumentParser]:
    data = sub.add_parser("data", help="dataset statistics")
    ev = sub.add_parser("reference", help="evaluate a reference recommender (popularity, random)")
    ev.add_argument("model", choices=REFERENCE_MODELS)
    ev.add_argument("--stage", default="test", choices=("valid", "test"))
    ev.add_argument("--protocols", nargs="+", default=["full", "uniform-100", "popularity-100"])
    ev.add_argument("--ks", nargs="+", type=int, default=[1, 5, 10, 20])
    for p in (data, ev):
        names = ("--data",) if p is ev else ("data",)
        extra = {} if p is ev else {"nargs": "?"}
        p.add_argument(
            *names,
            default="synthetic",
            help="synthetic | ml-100k | ml-1m | amazon-beauty | amazon-sports | PATH | "
            "sasrec:FILE[?min_item_count=N] (SASRec's 'user item' pair format)",
            **extra,
        )
        p.add_argument("--data-dir", default=None, help="where the datasets live")
        p.add_argument("--download", action="store_true", help="download if missing")
    return [data, ev]


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """The default command and former spellings, decided by names only (never by files).

    No command (or a leading option) means ``demo``; ``evaluate popularity|random`` is the former
    spelling of ``reference popularity|random`` (a checkpoint file named so: pass ``./random``).
    """
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        return ["demo", *argv]
    names = [a for a in argv[1:] if a in REFERENCE_MODELS]
    if argv[0] == "evaluate" and names:
        print(f"recgym: note: `recgym evaluate {names[0]}` is now `recgym reference {names[0]}`",
              file=sys.stderr)  # fmt: skip
        return ["reference", *argv[1:]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of this layer's commands (the console script is ``agents.experiments.cli``)."""
    parser = build_parser()
    args = parser.parse_args(normalize_argv(sys.argv[1:] if argv is None else argv))
    try:
        HANDLERS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"recgym: error: {err}", file=sys.stderr)
        return 2
    return 0


HANDLERS = {"demo": run_demo, "data": run_data, "reference": run_reference}


if __name__ == "__main__":
    raise SystemExit(main())
