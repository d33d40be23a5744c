"""Training windows' batching: padding trimming is exact, bucketing visits every row once."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.gru import GRUConfig, GRUPolicy
from agents.losses import sequence_loss
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.sequences import (
    bucketed_minibatches,
    drop_padding_columns,
    training_windows,
    trimmed_batches,
)


def _policy(kind: str, n_items: int):
    torch.manual_seed(0)
    if kind == "sasrec":
        return SASRecPolicy(
            SASRecConfig(max_len=10, dim=16, n_blocks=2, n_heads=1), n_items=n_items
        )
    return GRUPolicy(GRUConfig(max_len=10, dim=16, hidden_size=16), n_items=n_items)


@pytest.mark.parametrize("kind", ["sasrec", "gru"])
def test_trimming_keeps_the_loss_and_its_gradients(synthetic, kind):
    _, split = synthetic
    inputs, targets = training_windows(split, 10)
    short = (inputs != 0).sum(dim=1) <= 6  # a batch whose longest row leaves padding columns
    inputs, targets = inputs[short][:32], targets[short][:32]
    trimmed = drop_padding_columns(inputs, targets)
    assert trimmed[0].shape[1] < inputs.shape[1]
    policy = _policy(kind, split.dataset.n_items).eval()  # eval: no dropout masks to differ
    grads = []
    for batch in ((inputs, targets), trimmed):
        policy.zero_grad()
        loss = sequence_loss(policy, *batch, loss="ce", chunk_size=7)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in policy.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for full, cut in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(full, cut, atol=1e-6, rtol=1e-5)


def test_trimming_an_all_padding_batch_keeps_one_column():
    inputs = torch.zeros(3, 5, dtype=torch.long)
    out, targets = drop_padding_columns(inputs, inputs.clone())
    assert out.shape == (3, 1) and targets.shape == (3, 1)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=80),
    batch_size=st.integers(1, 9),
    pool_batches=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_bucketing_visits_every_row_once_in_length_sorted_batches(
    lengths, batch_size, pool_batches, seed
):
    lengths = torch.tensor(lengths)
    rows = torch.arange(len(lengths))
    generator = torch.Generator().manual_seed(seed)
    batches = list(
        bucketed_minibatches(
            rows,
            lengths=lengths,
            batch_size=batch_size,
            generator=generator,
            pool_batches=pool_batches,
        )  # fmt: skip
    )
    seen = torch.cat([b for (b,) in batches])
    assert sorted(seen.tolist()) == rows.tolist()
    assert all(len(b) <= batch_size for (b,) in batches)
    for (b,) in batches:  # a batch comes from one sorted pool: non-decreasing lengths
        assert torch.all(lengths[b][1:] >= lengths[b][:-1])


def test_bucketing_is_seeded_and_shrinks_batches(synthetic):
    _, split = synthetic
    inputs, targets = training_windows(split, 10)
    lengths = (inputs != 0).sum(dim=1)

    def widths(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        batches = bucketed_minibatches(
            inputs, targets, lengths=lengths, batch_size=16, generator=generator
        )
        return [drop_padding_columns(*batch)[0].shape[1] for batch in batches]

    assert widths(0) == widths(0) and widths(0) != widths(1)
    # rows of one length share a batch, so most batches are exactly as wide as their rows
    assert sum(widths(0)) < 0.9 * len(widths(0)) * inputs.shape[1]


def test_bucketing_rejects_misaligned_lengths():
    rows = torch.arange(4)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="share their first dimension"):
        next(bucketed_minibatches(rows, lengths=torch.ones(3), batch_size=2, generator=generator))
    with pytest.raises(TypeError, match="Generator"):
        next(bucketed_minibatches(rows, lengths=torch.ones(4), batch_size=2, generator=None))


def test_bucketed_training_gives_every_target_the_same_weight(synthetic, monkeypatch):
    from agents.mle import MLEConfig, MLETrainer

    _, split = synthetic
    policy = _policy("sasrec", split.dataset.n_items)
    config = MLEConfig(epochs=1, batch_size=16, batching="bucketed", max_len=10)
    trainer = MLETrainer(policy, split, config)
    weights = []
    step = trainer._step

    def spy(inputs, targets, generator, scale=None, **kwargs):
        weights.append(float(scale) / int((targets > 0).sum()))  # weight of each target
        return step(inputs, targets, generator, scale, **kwargs)

    monkeypatch.setattr(trainer, "_step", spy)
    trainer.fit()
    inputs, targets = training_windows(split, 10)
    per_target = len(inputs) / (float((targets > 0).sum()) * 16)
    assert len(weights) == -(-len(inputs) // 16)
    # batches of 16 short rows and of 16 long rows: without the scale these would differ ~5x
    torch.testing.assert_close(torch.tensor(weights), torch.full((len(weights),), per_target))


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    batch_size=st.integers(1, 7),
    chunk=st.integers(1, 9),
)
def test_trimmed_batches_equal_trimming_each_batch(lengths, batch_size, chunk):
    """One device read per ``chunk`` batches trims exactly as one read per batch (all-padding
    batches keep their last column)."""
    width = 6
    inputs = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        inputs[row, width - n :] = torch.arange(1, n + 1)
    targets = inputs.roll(-1, dims=1)
    batches = [(inputs[i : i + batch_size], targets[i : i + batch_size])
               for i in range(0, len(inputs), batch_size)]  # fmt: skip
    expected = [drop_padding_columns(*batch) for batch in batches]
    got = list(trimmed_batches(iter(batches), chunk))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
