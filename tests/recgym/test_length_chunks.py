"""Length-chunked scoring: full-window scores and ranks, for padding-invariant models only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recgym import SequenceDataset, leave_one_out
from recgym.evaluation import evaluate_ranks
from recgym.length_chunks import chunk_plan, score_by_length

N_ITEMS = 40


class BagScorer:
    """Scores item ``i`` by how often a fixed item-item table links it to the real history items
    (exactly invariant to left padding); records the window widths it was given."""

    def __init__(self, *, padding_invariant: bool, seed: int = 0) -> None:
        self.padding_invariant = padding_invariant
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.randn(N_ITEMS + 1, N_ITEMS + 1, generator=generator)
        self.table[0] = 0.0  # padding contributes nothing
        self.widths: list[int] = []

    def score(self, history, user):
        self.widths.append(history.shape[1])
        return self.table[history].sum(1)


def _split(seed: int = 0, n_users: int = 300, long_share: float = 0.05):
    rng = np.random.default_rng(seed)
    long = rng.random(n_users) < long_share
    lengths = np.where(long, rng.integers(40, 80, n_users), rng.integers(3, 8, n_users))
    sequences = [rng.integers(1, N_ITEMS + 1, size=n).tolist() for n in lengths]
    return leave_one_out(SequenceDataset.from_sequences(sequences, n_items=N_ITEMS))


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 60), min_size=1, max_size=300),
    rows=st.integers(1, 64),
)
def test_plan_orders_rows_and_covers_every_length(lengths, rows):
    lengths = np.array(lengths)
    plan = chunk_plan(lengths, max_len=50, rows=rows)
    if plan is None:
        return
    order, widths = plan
    assert sorted(order.tolist()) == list(range(len(lengths)))
    assert len(widths) == -(-len(lengths) // rows)
    for chunk, width in enumerate(widths):
        members = order[chunk * rows : (chunk + 1) * rows]
        assert 1 <= width <= 50
        assert width >= np.clip(lengths[members], 1, 50).max()


def test_plan_declines_when_windows_are_full():
    assert chunk_plan(np.full(500, 50), max_len=50) is None
    assert chunk_plan(np.full(500, 120), max_len=50) is None  # longer than the window: clipped
    order, widths = chunk_plan(np.r_[np.full(256, 3), [50]], max_len=50, rows=128)
    assert widths == [3, 3, 50] and order[-1] == 256


def test_scores_equal_full_windows_and_keep_row_order():
    split = _split()
    users, positions = split.targets("test")
    history = split.dataset.windows(users, positions, 50)
    lengths = positions - split.dataset.offsets[users]
    scorer = BagScorer(padding_invariant=True)
    user = torch.as_tensor(users)
    expected = scorer.score(history, user)
    scorer.widths.clear()
    got = score_by_length(scorer.score, history, user, lengths, rows=32)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert max(scorer.widths) == 50 and min(scorer.widths) < 10  # trimmed, except the long rows
    with pytest.raises(ValueError, match="lengths has 3 entries but history has"):
        score_by_length(scorer.score, history, user, lengths[:3])


@pytest.mark.parametrize("invariant", [True, False])
def test_evaluation_ranks_are_unchanged_and_only_invariant_models_are_trimmed(invariant):
    split = _split(seed=1)
    scorer = BagScorer(padding_invariant=invariant)
    protocols = ("full", "uniform-10")
    trimmed = evaluate_ranks(scorer, split, "test", protocols=protocols, max_len=50, batch_size=256)
    widths = list(scorer.widths)
    scorer.padding_invariant = False
    scorer.widths.clear()
    plain = evaluate_ranks(scorer, split, "test", protocols=protocols, max_len=50, batch_size=256)
    assert set(scorer.widths) == {50}
    for protocol in protocols:
        np.testing.assert_array_equal(trimmed.ranks[protocol], plain.ranks[protocol])
        np.testing.assert_array_equal(trimmed.n_candidates[protocol], plain.n_candidates[protocol])
    assert (min(widths) < 50) == invariant
