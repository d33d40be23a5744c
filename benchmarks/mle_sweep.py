"""SASRec MLE settings to their best validation NDCG@10 on ML-100K: the schedule sweep of issue 21.

Each argument is a JSON object of :class:`agents.mle.MLEConfig` overrides on top of the zoo's
SASRec MLE settings as of before issue 21 (``ModelZoo.mle_config()``: constant lr 1e-3, batch
128; with ``--fresh``, today's from-scratch settings), plus an optional ``"seed"`` and an
optional ``"model"`` object of ``SASRecConfig``
overrides (e.g. ``{"dropout": 0.5}``). ``total_cpu_s`` is the process's CPU time (robust to other
jobs on a shared machine; ``cpu_to_best_s`` scales it to the best epoch).
One JSON line per setting: median epoch seconds, best epoch, seconds to the best (validation
included), best validation and test full NDCG@10, the validation curve.

Usage::

    python benchmarks/mle_sweep.py --threads 1 \\
        '{"epochs": 40, "eval_every": 1, "patience": 10, "lr": 0.002, "batch_size": 64,
          "lr_schedule": "cosine", "warmup_epochs": 1}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)


def run(spec: str, split, data_name: str, fresh: bool = False) -> dict:
    from agents.experiments.zoo import ModelZoo, ZooConfig
    from agents.mle import MLETrainer
    from recgym import evaluate

    overrides = json.loads(spec)
    seed = overrides.pop("seed", 0)
    model = overrides.pop("model", {})
    zoo = ModelZoo(split, ZooConfig(), seed=seed)
    policy = zoo.new_policy("sasrec")
    if model:  # SASRecConfig overrides (dropout, dim, heads, ...), the zoo's seeded init
        from agents.checkpoint import forked_global_rng
        from agents.sasrec import SASRecPolicy

        config = dataclasses.replace(policy.config, **model)
        with forked_global_rng(seed):
            policy = SASRecPolicy(config, n_items=split.dataset.n_items)
    trainer = MLETrainer(policy, split, zoo.mle_config(fresh_sasrec=fresh, **overrides))
    tic, cpu = time.perf_counter(), time.process_time()
    result = trainer.fit()
    total, cpu = time.perf_counter() - tic, time.process_time() - cpu
    history = result.history.set_index("epoch")
    test = evaluate(policy, split, "test", protocols=("full",), ks=(10,), max_len=50)
    return {
        "data": data_name, "spec": overrides, "seed": seed,
        "epoch_s": round(float(history["time/epoch_s"].median()), 2),
        "best_epoch": result.best_epoch,
        "to_best_s": round(float(history.loc[result.best_epoch, "time/elapsed_s"]), 1),
        "total_s": round(total, 1), "total_cpu_s": round(cpu, 1),
        "cpu_to_best_s": round(cpu * float(history.loc[result.best_epoch, "time/elapsed_s"])
                               / max(total, 1e-9), 1),
        "model": model, "valid": round(result.best_metrics["eval/NDCG@10"], 4),
        "test": round(float(test[test.metric == "NDCG"].value.iloc[0]), 4),
        "curve": [round(v, 4) for v in history["eval/NDCG@10"].dropna().tolist()],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from recgym import leave_one_out
    from recgym.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="+", help="JSON MLEConfig overrides, one per run")
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--data-dir", default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="on top of today's from-scratch SASRec settings (ModelZoo.mle_config(fresh_sasrec="
        "True): warm-up + cosine, bucketed batches, bf16 CE) instead of the pre-issue-21 ones",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = leave_one_out(load_dataset(args.data, data_dir=args.data_dir))
    for spec in args.specs:
        print(json.dumps(run(spec, split, args.data, fresh=args.fresh)), flush=True)


if __name__ == "__main__":
    main()
