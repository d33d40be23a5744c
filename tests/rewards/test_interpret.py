"""Per-step factor scores of one sequence (MFGAN Fig. 4): the frame and the plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rewards.interpret import factor_scores_frame, plot_factor_scores, prefix_windows  # noqa: E402
from rewards.multifactor import MultiFactorConfig, MultiFactorDiscriminator, combine  # noqa: E402

SEQUENCE = [3, 1, 4, 1, 5, 2, 6, 7]


@pytest.fixture
def model(tiny_dataset) -> MultiFactorDiscriminator:
    config = MultiFactorConfig(dim=16, n_heads=2, dropout=0.0, max_len=5, combination=1.5)
    return MultiFactorDiscriminator(config, tiny_dataset.factors, seed=0).eval()


def test_prefix_windows_are_left_padded_prefixes():
    windows = prefix_windows(torch.tensor([7, 8, 9, 10]), max_len=3)
    expected = [[0, 0, 7], [0, 7, 8], [7, 8, 9], [8, 9, 10]]
    assert windows.tolist() == expected


def test_frame_scores_every_prefix(model, tiny_dataset):
    frame = factor_scores_frame(model, SEQUENCE, tiny_dataset)
    names = model.discriminator_names
    factor_cols = [f"factor/{n}" for n in names]
    assert list(frame.columns) == [
        "step",
        "item",
        "raw_item_id",
        *factor_cols,
        "reward",
        "leading_factor",
    ]
    assert frame["step"].tolist() == list(range(len(SEQUENCE)))
    assert frame["item"].tolist() == SEQUENCE
    assert frame["raw_item_id"].tolist() == [tiny_dataset.item_ids[i] for i in SEQUENCE]
    for t in (0, 3, len(SEQUENCE) - 1):  # row t == scoring sequence[:t + 1] on its own
        alone = torch.sigmoid(model.factor_logits(torch.tensor([SEQUENCE[: t + 1]])))[0]
        assert np.allclose(
            frame.loc[t, factor_cols].to_numpy(float), alone.detach().numpy(), atol=1e-6
        )
    scores = frame[factor_cols].to_numpy()
    assert np.allclose(frame["reward"], combine(torch.tensor(scores), 1.5).numpy())
    assert np.allclose(
        frame["reward"], model.reward(prefix_windows(torch.tensor(SEQUENCE), 5)).numpy(), atol=1e-6
    )
    assert frame["leading_factor"].tolist() == [names[j] for j in scores.argmax(1)]


def test_frame_without_dataset_and_from_tensors(model):
    frame = factor_scores_frame(model, torch.tensor(SEQUENCE))
    assert "raw_item_id" not in frame and len(frame) == len(SEQUENCE)
    assert model.training is False  # mode restored


@pytest.mark.parametrize(
    ("sequence", "match"),
    [
        ([], "non-empty 1-D"),
        ([[1, 2]], "non-empty 1-D"),
        ([1, 0, 2], r"item ids must lie in \[1, 7\]"),
        ([1, 8], r"item ids must lie in \[1, 7\]"),
        ([1.0, float("nan")], "NaN"),
        (["a", "b"], "integer item ids"),
    ],
)
def test_bad_sequences_raise(model, sequence, match):
    with pytest.raises(ValueError, match=match):
        factor_scores_frame(model, sequence)


def test_other_models_and_datasets_are_rejected(model, tiny_dataset):
    with pytest.raises(TypeError, match="MultiFactorDiscriminator"):
        factor_scores_frame(torch.nn.Linear(2, 2), SEQUENCE)
    other = MultiFactorDiscriminator(MultiFactorConfig(dim=8), tiny_dataset.factors.without("tags"))
    frame = factor_scores_frame(other, SEQUENCE)
    assert "factor/tags" not in frame


def test_plot_draws_one_bar_per_factor_and_step(model, tiny_dataset):
    frame = factor_scores_frame(model, SEQUENCE, tiny_dataset)
    ax = plot_factor_scores(frame)
    try:
        bars = ax.patches
        assert len(bars) == len(SEQUENCE) * model.n_discriminators
        highlighted = sum(bar.get_alpha() == 1.0 for bar in bars)
        assert highlighted == len(SEQUENCE)  # exactly one leading factor per step
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == [str(tiny_dataset.item_ids[i]) for i in SEQUENCE]
    finally:
        plt.close(ax.figure)


def test_plot_on_given_axes_and_bad_frames(model):
    fig, ax = plt.subplots()
    try:
        assert plot_factor_scores(factor_scores_frame(model, SEQUENCE), ax=ax) is ax
        with pytest.raises(ValueError, match="factor_scores_frame"):
            plot_factor_scores(factor_scores_frame(model, SEQUENCE).drop(columns="leading_factor"))
    finally:
        plt.close(fig)
