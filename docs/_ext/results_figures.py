"""The results page's figures, drawn at build time from ``docs/results/*.csv`` (matplotlib only).

Each chart shows the mean over seeds as a bar and the standard deviation over seeds (ddof 1) as
its error bar, with the number of seeds in the label. The env-throughput chart reads the
measured table of ``docs/benchmarks.md``. Run by the Sphinx hook in :mod:`recgym_docs`, or by
hand::

    python docs/_ext/results_figures.py docs docs/_generated
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

RANKING_CSVS = {
    "ml-100k": "MovieLens-100K (CE), test full ranking",
    "amazon-beauty": "Amazon Beauty (BCE), test full ranking",
    "amazon-sports": "Amazon Sports (BCE), test full ranking",
    "amazon-ce": "Amazon (full-softmax CE rows), test full ranking",
}
IMITATION_METRICS = (
    ("reverse_kl_sum", "10-step reverse KL (nats, lower is better)"),
    ("cascading_sum", "cascading part (nats, lower is better)"),
    ("test_ndcg10", "test NDCG@10"),
)
THROUGHPUT_COMMAND = "python benchmarks/env_throughput.py --threads 2"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_std(frame: pd.DataFrame, by: str, metric: str) -> pd.DataFrame:
    """Mean, std (ddof 1, 0 for one seed) and seed count of ``metric`` per ``by``, CSV order."""
    rows = frame.dropna(subset=[metric])
    stats = rows.groupby(by, sort=False)[metric].agg(["mean", "std", "count"])
    return stats.fillna({"std": 0.0})


def bars(ax, stats: pd.DataFrame, title: str, horizontal: bool = False) -> None:
    labels = [f"{name} ({n})" for name, n in zip(stats.index, stats["count"], strict=True)]
    kwargs = dict(capsize=3, color="#4c72b0", ecolor="black", alpha=0.9)
    if horizontal:
        ax.barh(labels, stats["mean"], xerr=stats["std"], **kwargs)
        ax.invert_yaxis()
    else:
        ax.bar(labels, stats["mean"], yerr=stats["std"], **kwargs)
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)


def save(fig, path: Path) -> Path:
    """Save atomically (a half-written PNG never reaches the site)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    os.replace(tmp, path)
    return path


def ranking_figure(csv: Path, title: str, path: Path) -> Path:
    """Test full-ranking NDCG@10 and HR@10 per model."""
    frame = pd.read_csv(csv)
    fig, axes = _pyplot().subplots(1, 2, figsize=(11, 3.8))
    for ax, metric in zip(axes, ("full/NDCG@10", "full/HR@10"), strict=True):
        bars(ax, mean_std(frame, "model", metric), metric.replace("full/", "full-ranking "))
    fig.suptitle(f"{title} — mean ± std over seeds (seeds per bar in brackets)")
    return save(fig, path)


def imitation_figure(csv: Path, path: Path) -> Path:
    """The imitation benchmark's summary columns per method."""
    frame = pd.read_csv(csv)
    fig, axes = _pyplot().subplots(1, 3, figsize=(14, 5.2), sharey=True)
    for ax, (metric, title) in zip(axes, IMITATION_METRICS, strict=True):
        bars(ax, mean_std(frame, "method", metric), title, horizontal=True)
    fig.suptitle("Imitation of the synthetic true user — mean ± std over seeds")
    fig.tight_layout()
    return save(fig, path)


def discriminator_figure(csv: Path, path: Path) -> Path:
    """Held-out AUC of each MFGAN discriminator configuration, one panel per study."""
    frame = pd.read_csv(csv)
    studies = list(dict.fromkeys(frame["study"]))
    fig, axes = _pyplot().subplots(1, len(studies), figsize=(5 * len(studies), 3.4))
    for ax, study in zip(axes, studies, strict=True):
        stats = mean_std(frame[frame["study"] == study], "config", "valid_auc")
        bars(ax, stats, f"{study}: validation AUC", horizontal=True)
        ax.axvline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlim(0.4, max(0.8, float((stats["mean"] + stats["std"]).max()) + 0.02))
    fig.suptitle("ML-100K MFGAN discriminators — mean ± std over seeds")
    fig.tight_layout()
    return save(fig, path)


def markdown_table_after(text: str, marker: str) -> pd.DataFrame:
    """The first Markdown table after the line holding ``marker``, as strings."""
    start = text.index(marker)
    lines = [line for line in text[start:].splitlines()[1:] if line.strip()]
    table = []
    for line in lines:
        if not line.startswith("|"):
            if table:
                break
            continue
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    if len(table) < 3:
        raise ValueError(f"no Markdown table after {marker!r}")
    return pd.DataFrame(table[2:], columns=table[0])


def throughput_figure(benchmarks_md: Path, path: Path) -> Path:
    """Env steps/s against the number of parallel sessions N (docs/benchmarks.md's table)."""
    table = markdown_table_after(benchmarks_md.read_text(encoding="utf-8"), THROUGHPUT_COMMAND)
    rate = {c: c for c in table.columns if c.endswith("steps/s")}
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (reward, rows) in zip(axes, table.groupby("reward", sort=False), strict=False):
        n = rows["N"].astype(int)
        for column in rate:
            values = rows[column].map(lambda s: float(re.sub(r"[^0-9.]", "", s)))
            ax.plot(n, values, marker="o", label=column.replace(" steps/s", ""))
        ax.set(xscale="log", yscale="log", xlabel="parallel sessions N", title=f"{reward} reward")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("env steps / s")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"Environment throughput ({THROUGHPUT_COMMAND}, 2 shared CPU cores)")
    fig.tight_layout()
    return save(fig, path)


def jobs(srcdir: Path, outdir: Path) -> list[tuple[list[Path], Path, Callable[[], Path]]]:
    """``(inputs, output, draw)`` of every figure."""
    results = srcdir / "results"
    out: list[tuple[list[Path], Path, Callable[[], Path]]] = []
    for stem, title in RANKING_CSVS.items():
        csv, png = results / f"{stem}.csv", outdir / f"{stem}.png"
        out.append(([csv], png, lambda c=csv, t=title, p=png: ranking_figure(c, t, p)))
    imitation, png = results / "imitation.csv", outdir / "imitation.png"
    out.append(([imitation], png, lambda: imitation_figure(imitation, outdir / "imitation.png")))
    disc = results / "ml-100k-mfgan-discriminators.csv"
    disc_png = outdir / "ml-100k-mfgan-discriminators.png"
    out.append(([disc], disc_png, lambda: discriminator_figure(disc, disc_png)))
    bench, bench_png = srcdir / "benchmarks.md", outdir / "env_throughput.png"
    out.append(([bench, Path(__file__)], bench_png, lambda: throughput_figure(bench, bench_png)))
    return out


def draw_all(srcdir: Path, outdir: Path) -> list[Path]:
    """Draw each figure whose output is missing or older than its inputs; the paths drawn."""
    drawn = []
    for inputs, output, draw in jobs(srcdir, outdir):
        missing = [path for path in inputs if not path.exists()]
        if missing:
            raise FileNotFoundError(f"results figure {output.name}: missing input(s) {missing}")
        newest = max(path.stat().st_mtime for path in [*inputs, Path(__file__)])
        if not output.exists() or output.stat().st_mtime < newest:
            drawn.append(draw())
    return drawn


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python docs/_ext/results_figures.py SRCDIR OUTDIR")
    for drawn_path in draw_all(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"wrote {drawn_path}")
