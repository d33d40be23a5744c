"""One figure of an adversarial run's health: does D still inform, does the policy move?

The panels read the per-round frame of :meth:`agents.adversarial.AdversarialTrainer.train` (or its
``history`` CSV): held-out discriminator AUC (with the chance line), reward mean ± std, policy
entropy, KL from the start policy, relative weight change, the policy gradient's signal-to-noise
ratio (policy-gradient mode), coverage, and validation NDCG@10.
A flat KL-from-start curve with a held-out AUC near 0.5 is the signature of a loop that gives back
its starting policy.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PANELS: tuple[tuple[str, str], ...] = (
    ("disc/heldout_auc", "held-out D AUC"),
    ("reward/mean", "reward (mean ± std)"),
    ("policy/heldout_entropy", "policy entropy (nats)"),
    ("policy/kl_from_start", "KL(π ‖ π_start) (nats)"),
    ("policy/rel_change", "‖θ − θ_start‖ / ‖θ_start‖"),
    ("policy/grad_snr", "gradient SNR (0 = noise)"),
    ("rollout/coverage", "rollout coverage"),
    ("policy/top1_coverage", "greedy top-1 coverage"),
    ("eval/NDCG@10", "validation NDCG@10"),
)
"""``(column, title)`` of each panel, in order; panels whose column is absent are left out."""


def plot_training_health(history: pd.DataFrame, *, title: str | None = None) -> Any:
    """A matplotlib figure with one panel per health metric present in ``history``.

    Args:
        history: one row per round with a ``round`` column (``AdversarialTrainer.train()``).
        title: the figure's title.

    Returns:
        The ``matplotlib.figure.Figure`` (save it with ``fig.savefig(path)``).

    Raises:
        ValueError: ``history`` has no ``round`` column or none of the health columns.
    """
    if not isinstance(history, pd.DataFrame) or "round" not in history:
        raise ValueError("history must be a DataFrame with a 'round' column (trainer.train())")
    panels = [(col, name) for col, name in PANELS if col in history and history[col].notna().any()]
    if not panels:
        expected = [col for col, _ in PANELS]
        raise ValueError(f"history has none of the health columns {expected}")
    import matplotlib.pyplot as plt  # lazy: only plotting needs matplotlib

    n_cols = min(4, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols, 2.8 * n_rows), squeeze=False)
    for ax, (col, name) in zip(axes.flat, panels, strict=False):
        rows = history.dropna(subset=[col])
        ax.plot(rows["round"], rows[col], marker="o", ms=3)
        if col == "reward/mean" and "reward/std" in rows:
            low, high = rows[col] - rows["reward/std"], rows[col] + rows["reward/std"]
            ax.fill_between(rows["round"], low, high, alpha=0.2)
        if col == "disc/heldout_auc":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if col == "policy/grad_snr":
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("round")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
