"""Which factor drives the reward, step by step (MFGAN Fig. 4).

:func:`factor_scores_frame` scores every prefix of one user's sequence with each factor
discriminator of a :class:`~rewards.multifactor.MultiFactorDiscriminator` (all prefixes in one
batched call) and tabulates the per-factor scores, the combined reward and the leading factor;
:func:`plot_factor_scores` draws them as per-factor bars under the item sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recgym._torch_io import evaluating
from recgym.data import SequenceDataset
from recgym.types import PAD
from rewards.multifactor import MultiFactorDiscriminator, combine

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def prefix_windows(sequence: Tensor, max_len: int) -> Tensor:
    """Every prefix of ``sequence`` as a left-padded row: ``(T,) -> (T, min(T, max_len))``.

    Row ``t`` holds ``sequence[:t + 1]`` (its newest ``max_len`` items), right-aligned.
    """
    length = sequence.shape[0]
    width = min(length, max_len)
    steps = torch.arange(length, device=sequence.device).unsqueeze(1)
    source = steps - (width - 1) + torch.arange(width, device=sequence.device)  # (T, W)
    return torch.where(source >= 0, sequence[source.clamp(min=0)], PAD)


def factor_scores_frame(
    model: MultiFactorDiscriminator,
    sequence: Sequence[int] | np.ndarray | Tensor,
    dataset: SequenceDataset | None = None,
) -> pd.DataFrame:
    """Per-step factor scores of one item sequence.

    Step ``t`` scores the prefix ``sequence[:t + 1]``, i.e. how real each discriminator finds
    item ``sequence[t]`` after its history. All prefixes are scored in one batched call, in
    eval mode without gradients.

    Args:
        model: a multi-factor discriminator.
        sequence: ``(T,)`` item ids in ``1..n_items`` (no padding), oldest first.
        dataset: if given, adds the raw item ids (``raw_item_id``).

    Returns:
        One row per step with columns ``step``, ``item`` (, ``raw_item_id``), one
        ``factor/<name>`` score per discriminator, ``reward`` (the combined score, Eq. 9–10)
        and ``leading_factor`` (the discriminator with the highest score at that step).

    Raises:
        TypeError: ``model`` is not a :class:`MultiFactorDiscriminator`.
        ValueError: ``sequence`` is empty, not 1-D, not integral or has ids outside
            ``1..n_items``; ``dataset`` has another catalogue size.
    """
    if not isinstance(model, MultiFactorDiscriminator):
        raise TypeError(f"model must be a MultiFactorDiscriminator; got {type(model).__name__}")
    items = _as_items(sequence, model.n_items)
    if dataset is not None and dataset.n_items != model.n_items:
        raise ValueError(
            f"dataset has {dataset.n_items} items but the model scores {model.n_items}; "
            "pass the dataset the model was trained on"
        )
    windows = prefix_windows(torch.as_tensor(items, device=model.device), model.config.max_len)
    with torch.no_grad(), evaluating(model):
        scores = torch.sigmoid(model.factor_logits(windows)).double().cpu()  # (T, m)
    names = list(model.discriminator_names)
    frame = pd.DataFrame({"step": np.arange(len(items)), "item": items})
    if dataset is not None:
        frame["raw_item_id"] = np.asarray(dataset.item_ids)[items]
    for j, name in enumerate(names):
        frame[f"factor/{name}"] = scores[:, j].numpy()
    frame["reward"] = combine(scores, model.config.combination).numpy()
    frame["leading_factor"] = [names[j] for j in scores.argmax(1).tolist()]
    return frame


def plot_factor_scores(frame: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Draw MFGAN's Fig. 4: per-factor score bars under each item of the sequence.

    Each step gets one bar per factor; the leading factor's bar is drawn opaque with a dark
    edge, the others faded. The combined reward is overlaid as a line.

    Args:
        frame: the output of :func:`factor_scores_frame`.
        ax: axes to draw on (default: a new figure's).

    Returns:
        The axes drawn on.
    """
    factor_cols = [c for c in frame.columns if c.startswith("factor/")]
    missing = {"step", "item", "leading_factor"} - set(frame.columns)
    if not factor_cols or missing:
        raise ValueError(
            "frame must come from factor_scores_frame (needs step, item, leading_factor and "
            f"factor/<name> columns); missing {sorted(missing) or ['factor/<name>']}"
        )
    import matplotlib.pyplot as plt  # lazy: only plotting needs matplotlib
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(frame)), 3.5))
    x = np.arange(len(frame))
    width = 0.8 / len(factor_cols)
    colors = plt.get_cmap("tab10")
    for j, col in enumerate(factor_cols):
        name = col.removeprefix("factor/")
        leads = (frame["leading_factor"] == name).to_numpy()
        offsets = x - 0.4 + (j + 0.5) * width
        bars = ax.bar(offsets, frame[col], width, color=colors(j % 10))
        for bar, lead in zip(bars, leads, strict=True):
            bar.set_alpha(1.0 if lead else 0.35)
            bar.set_edgecolor("black" if lead else "none")
    # Legend swatches at full opacity (the bars' own alpha depends on the step).
    handles = [
        Patch(color=colors(j % 10), label=c.removeprefix("factor/"))
        for j, c in enumerate(factor_cols)
    ]
    if "reward" in frame:
        handles += ax.plot(x, frame["reward"], color="black", marker="o", lw=1, label="reward")
    labels = frame["raw_item_id"] if "raw_item_id" in frame else frame["item"]
    ax.set_xticks(x, [str(v) for v in labels], rotation=45 if len(frame) > 12 else 0)
    ax.set_xlabel("item sequence (oldest → newest)")
    ax.set_ylabel("discriminator score")
    ax.set_ylim(0.0, 1.05)
    ax.set_title("Per-factor scores; the leading factor is outlined")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return ax


def _as_items(sequence: object, n_items: int) -> np.ndarray:
    array = np.asarray(sequence.cpu() if isinstance(sequence, Tensor) else sequence)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"sequence must be a non-empty 1-D array of item ids; got {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError("sequence must hold integer item ids; got NaN/inf or fractions")
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"sequence must hold integer item ids; got dtype {array.dtype}")
    if array.min() < 1 or array.max() > n_items:
        raise ValueError(
            f"item ids must lie in [1, {n_items}] (0 is padding, not an item); "
            f"got [{array.min()}, {array.max()}]"
        )
    return array.astype(np.int64)
