"""Paired differences (same seed) with a 95 % t interval over seeds, from reproduce.py CSVs.

For each (data, system − base, column): the per-seed differences, their mean, the mean relative
difference, and ``mean ± t_{0.975, n-1} · sd / sqrt(n)``. ``--ri`` adds APR's "RI": per seed, the
mean over the columns of the relative improvement (Table 3 of the APR paper averages 12 columns).

Usage::

    python benchmarks/paper_verdicts.py docs/results/ml-100k-apr-k100.csv --pairs apr:bpr-mf \
        --columns full/HR@50 full/HR@100 full/NDCG@50 full/NDCG@100 --ri
    python benchmarks/paper_verdicts.py runs/reproduce-beauty/results.csv \
        --pairs mfgan-wmle:mfgan-wmle-permuted mfgan-wmle-permuted:mfgan-wmle-one mfgan:sasrec

(``mfgan-wmle - mfgan-wmle-permuted`` is the adversary's contribution to MFGAN's weighted MLE;
the controls share every random stream with it, so the pairs are tight.)

``--inflation`` adds, per system, what reporting the best of its test evaluations would have
claimed over the validation-selected row (CSVs of ``reproduce.py --monitor-test``, column
``info/test_ndcg10_best_of_evals``; the official MFGAN code reports that best).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from scipy import stats


def paired(frame: pd.DataFrame, system: str, base: str, column: str) -> dict:
    """One row: per-seed differences of ``column`` (system − base) on one dataset's frame."""
    a = frame[frame["model"] == system].set_index("seed")[column]
    b = frame[frame["model"] == base].set_index("seed")[column]
    seeds = sorted(set(a.index) & set(b.index))
    if not seeds:
        raise ValueError(f"no common seed of {system!r} and {base!r} with column {column!r}")
    d = np.array([a[s] - b[s] for s in seeds])
    rel = np.array([a[s] / b[s] - 1 for s in seeds])
    half = np.nan
    if len(d) > 1:
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return {
        "pair": f"{system} - {base}", "column": column, "seeds": len(d),
        "base": b[seeds].mean(), "system": a[seeds].mean(),
        "per_seed": " / ".join(f"{x:+.4f}" for x in d), "mean": d.mean(),
        "ci95": f"[{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]", "relative": rel.mean(),
    }  # fmt: skip


def relative_improvement(frame: pd.DataFrame, system: str, base: str, columns: list[str]) -> dict:
    """APR's RI per seed (mean relative gain over ``columns``), with its 95 % interval."""
    a = frame[frame["model"] == system].set_index("seed")[columns]
    b = frame[frame["model"] == base].set_index("seed")[columns]
    seeds = sorted(set(a.index) & set(b.index))
    ri = np.array([(a.loc[s] / b.loc[s] - 1).mean() for s in seeds])
    half = stats.t.ppf(0.975, len(ri) - 1) * ri.std(ddof=1) / np.sqrt(len(ri))
    return {
        "pair": f"{system} - {base}", "column": "RI(" + ", ".join(columns) + ")",
        "seeds": len(ri), "per_seed": " / ".join(f"{x:+.2%}" for x in ri), "mean": ri.mean(),
        "ci95": f"[{ri.mean() - half:+.2%}, {ri.mean() + half:+.2%}]",
    }  # fmt: skip


def inflation(frame: pd.DataFrame, column: str = "full/NDCG@10") -> pd.DataFrame:
    """Per (data, model): best-of-test-evaluations minus the selected test ``column``."""
    best = "info/test_ndcg10_best_of_evals"
    if best not in frame:
        raise ValueError(f"no {best!r} column: run reproduce.py with --monitor-test")
    rows = []
    for (data, model), cells in frame.dropna(subset=[best]).groupby(["data", "model"], sort=False):
        gap = cells[best] - cells[column]
        rows.append({
            "data": data, "model": model, "seeds": len(gap), "selected": cells[column].mean(),
            "best_of_test": cells[best].mean(), "inflation": gap.mean(),
            "relative": (gap / cells[column]).mean(),
            "per_seed": " / ".join(f"{x:+.4f}" for x in gap),
        })  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", nargs="+")
    parser.add_argument("--pairs", nargs="+", required=True, help="system:base, e.g. apr:bpr-mf")
    parser.add_argument("--columns", nargs="+", default=["full/NDCG@10"])
    parser.add_argument("--ri", action="store_true", help="add APR's mean relative improvement")
    parser.add_argument(
        "--inflation", action="store_true", help="add best-of-test-evaluations minus selected"
    )
    args = parser.parse_args(argv)
    frame = pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True)
    rows = []
    for data, part in frame.groupby("data", sort=False):
        for pair in args.pairs:
            system, base = pair.split(":")
            if not {system, base} <= set(part["model"]):
                print(f"{data}: skipped {pair} (not both in the CSVs)", file=sys.stderr)
                continue
            for column in args.columns:
                rows.append({"data": data, **paired(part, system, base, column)})
            if args.ri:
                ri = relative_improvement(part, system, base, args.columns)
                rows.append({"data": data, **ri})
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        if args.inflation:
            print("\nbest of the test evaluations - the validation-selected test score:")
            print(inflation(frame).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
