"""Markdown table of ``run_sasrec_pytorch.py`` CSVs: final and best-validation test metrics.

Rows are grouped by setting (``maxlen``, ``hidden_units``, ``norm_first``); with several seeds
a cell reads ``mean ± std`` (sample std) and ``n`` says how many seeds.

Usage::

    python benchmarks/reference/summarize.py /tmp/refsas/*.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

METRICS = ["test_full_hr10", "test_full_ndcg10", "test_u100_hr10", "test_u100_ndcg10"]
METRICS += ["ref_test_hr10", "ref_test_ndcg10"]
SETTING = ["maxlen", "hidden_units", "norm_first"]


def picks(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: the final evaluation and the first one with the best validation NDCG@10."""
    rows = []
    for _, run in frame.groupby([*SETTING, "seed"], sort=True):
        run = run.sort_values("epoch")
        rows.append({**run.iloc[-1].to_dict(), "pick": "final"})
        rows.append({**run.loc[run.valid_full_ndcg10.idxmax()].to_dict(), "pick": "best-valid"})
    return pd.DataFrame(rows)


def table(frame: pd.DataFrame) -> str:
    """One markdown row per (setting, pick)."""
    head = ["maxlen", "dim", "norm_first", "pick", "n", "epoch", *METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, group in picks(frame).groupby([*SETTING, "pick"], sort=True):
        cells = [str(v) for v in key] + [str(len(group)), _cell(group.epoch, 0)]
        cells += [_cell(group[m], 4) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(values: pd.Series, digits: int) -> str:
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="+", type=Path)
    args = parser.parse_args()
    print(table(pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True)))
