"""Tables and the per-step KL plot of ``benchmarks/imitation.py`` (its ``--plot-only``)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}
"""Student t quantiles (0.975) by degrees of freedom, for the paired 95 % intervals."""
SUMMARY = ("reverse_kl_sum", "forward_kl_sum", "cascading_sum", "test_ndcg10")


def markdown_summary(table: pd.DataFrame) -> str:
    """Mean ± std over seeds per method, and each method minus BC paired by seed (95 % CI)."""
    lines = ["| method | seeds | " + " | ".join(SUMMARY) + " | best round |",
             "|---|---|" + "---|" * (len(SUMMARY) + 1)]  # fmt: skip
    bc = table[table["method"] == "bc"].set_index("seed")
    diffs = ["", "| method − bc (paired, 95 % CI) | seeds | " + " | ".join(SUMMARY) + " |",
             "|---|---|" + "---|" * len(SUMMARY)]  # fmt: skip
    for method, rows in table.groupby("method", sort=False):
        rows = rows.set_index("seed")
        cells = [f"{rows[c].mean():.3f} ± {rows[c].std(ddof=1):.3f}" if len(rows) > 1
                 else f"{rows[c].mean():.3f}" for c in SUMMARY]  # fmt: skip
        best = rows["best_round"].dropna().astype(int).tolist() if "best_round" in rows else []
        lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) +
                     f" | {','.join(map(str, best)) or '–'} |")  # fmt: skip
        if method == "bc":
            continue
        row = paired_row(method, rows, bc)
        if row:
            diffs.append(row)
    return "\n".join(lines + diffs + adversary_rows(table))


def adversary_rows(table: pd.DataFrame) -> list[str]:
    """MFGAN's weighted MLE minus its permuted control, paired by seed: the adversary's part."""
    header = "| adversary's contribution (paired, 95 % CI) | seeds | " + " | ".join(SUMMARY) + " |"
    out = ["", header, "|---|---|" + "---|" * len(SUMMARY)]
    for suffix in ("", "@last"):
        a = table[table["method"] == f"mfgan-wmle{suffix}"].set_index("seed")
        b = table[table["method"] == f"mfgan-wmle-permuted{suffix}"].set_index("seed")
        row = paired_row(f"mfgan-wmle{suffix} − permuted{suffix}", a, b)
        if row:
            out.append(row)
    return out if len(out) > 3 else []


def paired_row(name: str, a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    """``a − b`` per seed (both indexed by seed): mean and t 95 % interval of each column."""
    paired = a.index.intersection(b.index)
    if len(paired) < 2:
        return None
    cells = []
    for c in SUMMARY:
        d = a.loc[paired, c] - b.loc[paired, c]
        half = T975.get(len(d) - 1, 2.0) * d.std(ddof=1) / len(d) ** 0.5
        cells.append(f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]")
    return f"| {name} | {len(paired)} | " + " | ".join(cells) + " |"


def plot_curves(steps: pd.DataFrame, path: Path) -> Path:
    """Reverse and forward KL per continuation step, mean over seeds, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the validation-selected adversarial policies were all the start itself (round 0) in our
    # runs: draw what the rounds did, each method's last-round policy
    names = set(steps["method"])
    keep = steps[~steps["method"].map(lambda m: f"{m}@last" in names)]
    mean = keep.groupby(["method", "step"])[["reverse_kl", "forward_kl"]].mean().reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, col, name in zip(
        axes,
        ("reverse_kl", "forward_kl"),
        ("reverse KL(π ‖ p_true)", "forward KL(p_true ‖ π)"),
        strict=True,
    ):
        for method, frame in mean.groupby("method", sort=False):
            style = "--" if method == "bc" else "-"
            ax.plot(frame["step"], frame[col], style, marker="o", ms=3, label=method)
        ax.set_title(f"{name}, self-generated continuations")
        ax.set_xlabel("continuation step")
        ax.set_ylabel("nats")
    axes[1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    n_seeds = keep["seed"].nunique()
    fig.suptitle(f"Imitation of the synthetic true user (mean of {n_seeds} seed(s))")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
