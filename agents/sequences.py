"""Training batches for next-item MLE: all-position windows cut from a split, and minibatches.

:func:`training_windows` turns every user's sequence prefix (up to the end of a split stage)
into SASRec-style windows: ``inputs = seq[:-1]`` and ``targets = seq[1:]`` over the last
``max_len`` positions, left-padded, with target ``0`` meaning "no target here". A prefix
longer than ``max_len + 1`` is cut from its end into consecutive, non-overlapping windows, so
every target of the stage is predicted exactly once per epoch (the reference SASRec keeps only
the newest window per user; ``max_windows_per_user=1`` reproduces that). Everything is
computed with array operations over the CSR layout, without a Python loop over users.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from recgym._checks import check_positive_int
from recgym.device import resolve_device
from recgym.splits import STAGES, Split


def training_windows(
    split: Split,
    max_len: int,
    *,
    stage: str = "train",
    max_windows_per_user: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """All-position next-item training windows of every user.

    A user's prefix is ``items[offsets[u]:end[u]]`` where ``end`` is the end of the ``stage``
    segment: ``"train"`` uses the training segment only; ``"valid"`` adds the validation
    segment (refitting before a final test); ``"test"`` uses whole sequences. Validation and
    test items therefore never appear in ``"train"`` windows, as inputs or as targets.

    Args:
        split: the split.
        max_len: window length ``L``.
        stage: whose segment end bounds the prefixes, one of ``("train", "valid", "test")``.
        max_windows_per_user: keep only the newest this many windows of each user
            (``None`` = all, so that every target appears once).
        device: where the tensors go.

    Returns:
        ``(inputs, targets)``, two ``(N, L)`` int64 tensors, left-padded with ``0``;
        ``targets[n, t]`` is the item that follows ``inputs[n, :t + 1]`` (``0`` = none). Rows
        are user-major, newest window first; users with fewer than two items give none.

    Raises:
        TypeError / ValueError: bad ``split``, ``max_len``, ``stage`` or window cap.
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a recgym.Split; got {type(split).__name__}")
    check_positive_int("max_len", max_len)
    if max_windows_per_user is not None:
        check_positive_int("max_windows_per_user", max_windows_per_user)
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}; got {stage!r}")
    device = resolve_device(device)
    dataset = split.dataset
    start, end = dataset.offsets[:-1], split.stage_bounds(stage)[1]
    n_targets = np.maximum(end - start - 1, 0)
    n_windows = -(-n_targets // max_len)  # ceil
    if max_windows_per_user is not None:
        n_windows = np.minimum(n_windows, max_windows_per_user)
    users = np.repeat(np.arange(dataset.n_users, dtype=np.int64), n_windows)
    newest_first = np.arange(len(users), dtype=np.int64) - np.repeat(
        np.cumsum(n_windows) - n_windows, n_windows
    )
    ends = np.repeat(end, n_windows) - newest_first * max_len  # exclusive end of the targets
    inputs = dataset.windows(users, ends - 1, max_len, device=device)
    targets = dataset.windows(users, ends, max_len, device=device)
    # A target needs a real input before it: this drops the user's first item as a target.
    targets = torch.where(inputs != 0, targets, torch.zeros_like(targets))
    return inputs, targets


def minibatches(
    *tensors: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, ...]]:
    """Yield aligned minibatches of row-aligned tensors, shuffled by a seeded generator.

    Args:
        *tensors: tensors with the same first dimension ``N`` (on one device).
        batch_size: rows per batch.
        generator: drives the permutation (its device is used to draw it); required when
            ``shuffle`` is true, so that the order is always reproducible.
        shuffle: permute the rows; otherwise keep their order.
        drop_last: skip a final batch smaller than ``batch_size``.

    Yields:
        Tuples ``(t[idx] for t in tensors)`` of at most ``batch_size`` rows; one epoch.
    """
    if not tensors:
        raise ValueError("minibatches needs at least one tensor")
    check_positive_int("batch_size", batch_size)
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(
            f"tensors must share their first dimension; got {[len(t) for t in tensors]}"
        )
    if shuffle:
        if not isinstance(generator, torch.Generator):
            raise TypeError("shuffle=True needs a torch.Generator (seeded) as generator=")
        order = torch.randperm(n, generator=generator, device=generator.device)
        order = order.to(tensors[0].device)
    else:
        order = torch.arange(n, device=tensors[0].device)
    stop = n - n % batch_size if drop_last else n
    for begin in range(0, stop, batch_size):
        index = order[begin : min(begin + batch_size, stop)]
        yield tuple(t[index] for t in tensors)


def drop_padding_columns(inputs: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Drop the leading columns that are padding in every row of ``inputs``: ``(B, L) -> (B, L')``.

    On short-history data most columns of a left-padded batch are padding (Amazon Beauty: a
    median of 4 training items in windows of 50, so a random batch of 64 is ~80 % padding), and
    the encoder's cost is ``O(L)`` or ``O(L^2)`` per row. For a left-padding-invariant encoder
    (SASRec: positions count real items and padded keys are masked; GRU4Rec: rows are shifted
    left before the recurrence) every real position's state is unchanged, and the losses are
    means over real positions, so the loss and its gradients are the same. The one difference is
    dropout, which draws masks of the trimmed shape from the same seeded stream.

    Args:
        inputs: ``(B, L)`` left-padded ids (``0`` = padding).
        *others: tensors aligned with ``inputs`` column for column (targets, negatives).

    Returns:
        ``(inputs[:, first:], *(t[:, first:] for t in others))``, keeping at least one column.
    """
    real = (inputs != 0).any(dim=0)  # (L,)
    # argmax of the int mask finds the first real column; a host sync per batch, but one
    # scalar, and the slice needs a Python int
    first = int(real.to(torch.int8).argmax()) if bool(real.any()) else inputs.shape[1] - 1
    return (inputs[:, first:], *(t[:, first:] for t in others))


def trimmed_batches(
    batches: Iterable[tuple[Tensor, ...]], chunk: int = 1
) -> Iterator[tuple[Tensor, ...]]:
    """:func:`drop_padding_columns` on each ``(inputs, *others)`` batch, reading the device
    once per ``chunk`` batches instead of once per batch (the same batches, exactly).

    Each trimmed width needs a Python int, i.e. a host sync; on CUDA one per step stalls the
    queue, so the first real column of ``chunk`` upcoming batches is found in one transfer.
    """
    check_positive_int("chunk", chunk)
    if chunk == 1:
        for batch in batches:
            yield drop_padding_columns(*batch)
        return
    iterator = iter(batches)
    while pending := list(itertools.islice(iterator, chunk)):
        width = pending[0][0].shape[1]
        real = torch.stack([(batch[0] != 0).any(dim=0) for batch in pending])  # (chunk, L)
        # the first real column; an all-padding batch keeps its last column
        first = torch.where(real.any(dim=1), real.to(torch.int8).argmax(dim=1), width - 1)
        for batch, start in zip(pending, first.tolist(), strict=True):
            yield tuple(t[:, start:] for t in batch)


def bucketed_minibatches(
    *tensors: Tensor,
    lengths: Tensor,
    batch_size: int,
    generator: torch.Generator,
    pool_batches: int = 64,
) -> Iterator[tuple[Tensor, ...]]:
    """Minibatches of rows of similar length (bucketing), in a seeded random order.

    Rows are shuffled, cut into pools of ``pool_batches * batch_size`` rows, sorted by length
    within each pool, cut into batches, and the batches of all pools are shuffled again. Each
    epoch still visits every row once and every batch is random apart from its length range, so
    the expected gradient is that of random batches over the same rows; but a batch after
    :func:`drop_padding_columns` is only as wide as its longest row, so short-history data
    (Amazon: median 4 items, max 50) costs a fraction of the padded width. This is the bucket
    iterator of NLP toolkits (fairseq, AllenNLP) applied to left-padded windows.

    Args:
        *tensors: row-aligned ``(N, ...)`` tensors on one device.
        lengths: ``(N,)`` int64 real length of each row (the sort key).
        batch_size: rows per batch.
        generator: seeded generator that draws both permutations (its device is used).
        pool_batches: batches per sorting pool (larger: tighter length ranges, less
            randomness in which rows share a batch).

    Yields:
        Tuples ``(t[idx] for t in tensors)`` of at most ``batch_size`` rows; one epoch.
    """
    if not tensors:
        raise ValueError("bucketed_minibatches needs at least one tensor")
    check_positive_int("batch_size", batch_size)
    check_positive_int("pool_batches", pool_batches)
    if not isinstance(generator, torch.Generator):
        raise TypeError("bucketed_minibatches needs a seeded torch.Generator as generator=")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors) or lengths.shape != (n,):
        raise ValueError(
            f"tensors and lengths must share their first dimension; got "
            f"{[len(t) for t in tensors]} and lengths {tuple(lengths.shape)}"
        )
    device = tensors[0].device
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    pool = pool_batches * batch_size
    batches = []
    for begin in range(0, n, pool):
        rows = order[begin : begin + pool]
        rows = rows[torch.sort(lengths[rows], stable=True).indices]
        batches.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator, device=generator.device)
    for b in shuffled.tolist():
        yield tuple(t[batches[b]] for t in tensors)
