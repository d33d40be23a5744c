"""Train the reference SASRec (pmixer/SASRec.pytorch) on recgym's split; evaluate both ways.

The training loop re-enacts the reference ``main.py`` / ``utils.py``: per step, a batch of
users from the reference sampler (``WarpSampler``: each worker shuffles the user ids once and
walks through them cyclically, reshuffling only when a batch starts exactly at a multiple of
the user count; a user with at most one training item is replaced by a random one; the window
is the newest ``maxlen`` items of the training sequence, ``pos`` the next items, ``neg`` one
uniform item per position that is not in the user's training items), ``ceil(n_users /
batch_size)`` steps per epoch, BCE-with-logits on the positive and on the negative logits of
the non-padded positions, optional ``l2_emb`` on the item table, Adam (lr 1e-3, betas 0.9 /
0.98), no gradient clipping. Training uses recgym's leave-one-out **training segment** only.

Every ``--eval-every`` epochs the model is ranked (a) by ``recgym.evaluate`` (validation
``full`` NDCG@10 for model selection; test ``full`` and ``uniform-100``) and (b) by the
reference's own protocol (``utils.evaluate`` / ``evaluate_valid``, re-enacted batched: 100
negatives drawn uniformly *with replacement* from items outside the user's history, which does
not exclude the target; rank by double ``argsort`` as the reference does). One CSV row per
evaluation; the summary prints the final row and the best-validation row.

Usage::

    nice -n 10 python benchmarks/reference/run_sasrec_pytorch.py --data ml-100k \
        --data-dir /work/shared/data --maxlen 50 --hidden-units 64 --seed 0 --out /tmp/ref.csv
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sasrec_pytorch_model import ReferenceSASRec  # this folder: the script's sys.path[0]
from torch import Tensor, nn

from recgym import Split, evaluate, leave_one_out
from recgym.datasets import load_dataset

DEFAULT_DATA = os.environ.get(
    "RECGYM_DATA_DIR", str(Path(__file__).resolve().parents[3] / "shared" / "data")
)


# --------------------------------------------------------------------------- sampler
class _SamplerWorker:
    """One ``sample_function`` process of the reference ``WarpSampler``."""

    def __init__(self, sequences: list[np.ndarray], n_items: int, maxlen: int, rng) -> None:
        self.sequences, self.n_items, self.maxlen, self.rng = sequences, n_items, maxlen, rng
        self.uids = np.arange(len(sequences))
        self.counter = 0

    def batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.counter % len(self.uids) == 0:  # only at a batch start, as in the reference
            self.rng.shuffle(self.uids)
        rows = []
        for _ in range(batch_size):
            rows.append(self._sample(int(self.uids[self.counter % len(self.uids)])))
            self.counter += 1
        seq, pos, neg = (np.stack(column) for column in zip(*rows, strict=True))
        return seq, pos, neg

    def _sample(self, uid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        while len(self.sequences[uid]) <= 1:
            uid = int(self.rng.integers(len(self.sequences)))
        items = self.sequences[uid]
        inputs, targets = items[:-1][-self.maxlen :], items[1:][-self.maxlen :]
        negatives = self.rng.integers(1, self.n_items + 1, len(inputs))
        bad = np.isin(negatives, items)  # the reference excludes every training item
        while bad.any():
            negatives[bad] = self.rng.integers(1, self.n_items + 1, int(bad.sum()))
            bad = np.isin(negatives, items)
        out = np.zeros((3, self.maxlen), dtype=np.int64)
        n = len(inputs)
        if n:
            out[0, -n:], out[1, -n:], out[2, -n:] = inputs, targets, negatives
        return out[0], out[1], out[2]


class ReferenceSampler:
    """Batches ``(seq, pos, neg)``, each ``(B, maxlen)`` int64, right-aligned (left-padded).

    The reference runs ``n_workers`` processes feeding one queue; their batches are taken here
    in round-robin order, each worker with its own generator spawned from ``seed``.
    """

    def __init__(self, sequences, n_items, *, batch_size, maxlen, seed, n_workers=3) -> None:
        seeds = np.random.SeedSequence(seed).spawn(n_workers)
        self.workers = [
            _SamplerWorker(sequences, n_items, maxlen, np.random.default_rng(s)) for s in seeds
        ]
        self.batch_size, self.step = batch_size, 0

    def next_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        worker = self.workers[self.step % len(self.workers)]
        self.step += 1
        return worker.batch(self.batch_size)


def train_sequences(split: Split) -> list[np.ndarray]:
    """Every user's training segment (valid/test items excluded), oldest first."""
    start, end = split.stage_bounds("train")
    return [split.dataset.items[s:e].astype(np.int64) for s, e in zip(start, end, strict=True)]


def train_epoch(model, sampler, optimizer, n_batches: int, l2_emb: float) -> float:
    """One reference epoch; returns the mean loss."""
    model.train()
    bce = nn.BCEWithLogitsLoss()
    total = 0.0
    for _ in range(n_batches):
        seq, pos, neg = (torch.from_numpy(a) for a in sampler.next_batch())
        pos_logits, neg_logits = model(seq, pos, neg)
        keep = pos != 0
        loss = bce(pos_logits[keep], torch.ones_like(pos_logits[keep]))
        loss = loss + bce(neg_logits[keep], torch.zeros_like(neg_logits[keep]))
        if l2_emb:
            loss = loss + l2_emb * model.item_emb.weight.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / n_batches


# --------------------------------------------------------------------------- evaluation
class ReferenceRecommender(nn.Module):
    """recgym ``Recommender`` over the reference network: last state · item table."""

    def __init__(self, model: ReferenceSASRec) -> None:
        super().__init__()
        self.model = model

    def score(self, history: Tensor, user: Tensor) -> Tensor:
        """``(B, L)`` left-padded int64, ``(B,)`` -> ``(B, n_items + 1)``.

        The reference's positions are window columns, so windows are brought to ``maxlen``.
        """
        width, maxlen = history.shape[1], self.model.maxlen
        if width > maxlen:
            history = history[:, -maxlen:]
        elif width < maxlen:
            history = F.pad(history, (maxlen - width, 0))
        return self.model.all_scores(history)


def _metric(frame: pd.DataFrame, protocol: str, metric: str) -> float:
    row = frame[(frame.protocol == protocol) & (frame.metric == metric) & (frame.k == 10)]
    return float(row.value.iloc[0])


def recgym_metrics(model: ReferenceSASRec, split: Split, maxlen: int) -> dict[str, float]:
    """Validation full-ranking and test full / uniform-100 HR@10, NDCG@10 by recgym."""
    rec = ReferenceRecommender(model)
    valid = evaluate(rec, split, "valid", protocols=("full",), ks=(10,), max_len=maxlen)
    test = evaluate(rec, split, "test", protocols=("full", "uniform-100"), ks=(10,), max_len=maxlen)
    return {
        "valid_full_hr10": _metric(valid, "full", "HR"),
        "valid_full_ndcg10": _metric(valid, "full", "NDCG"),
        "test_full_hr10": _metric(test, "full", "HR"),
        "test_full_ndcg10": _metric(test, "full", "NDCG"),
        "test_u100_hr10": _metric(test, "uniform-100", "HR"),
        "test_u100_ndcg10": _metric(test, "uniform-100", "NDCG"),
    }


@torch.no_grad()
def reference_protocol(model, split: Split, stage: str, maxlen: int, rng) -> dict[str, float]:
    """The reference's ``evaluate`` (test) / ``evaluate_valid`` (valid), batched.

    History = every item before the target (window: the newest ``maxlen``); 100 negatives
    uniform with replacement over items not in that history (the target is *not* excluded).
    """
    model.eval()
    users, positions = split.targets(stage)
    ds = split.dataset
    n = ds.n_items
    history = ds.windows(users, positions, maxlen)
    targets = torch.as_tensor(ds.items[positions], dtype=torch.int64)
    rated = np.zeros((len(users), n + 1), dtype=bool)
    rated[:, 0] = True
    starts = ds.offsets[users]
    counts = positions - starts
    rows = np.repeat(np.arange(len(users)), counts)
    idx = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rated[rows, ds.items[idx + np.repeat(starts, counts)]] = True
    negatives = rng.integers(1, n + 1, (len(users), 100))
    bad = rated[np.arange(len(users))[:, None], negatives]
    while bad.any():
        negatives[bad] = rng.integers(1, n + 1, int(bad.sum()))
        bad = rated[np.arange(len(users))[:, None], negatives]
    candidates = torch.cat([targets[:, None], torch.from_numpy(negatives)], dim=1)  # (U, 101)
    logits = model.predict(history, candidates)
    rank = (-logits).argsort(dim=1).argsort(dim=1)[:, 0]  # the reference's tie handling
    pessimistic = (logits[:, 1:] >= logits[:, :1]).sum(dim=1)
    hit = rank < 10
    return {
        f"ref_{stage}_hr10": float(hit.float().mean()),
        f"ref_{stage}_ndcg10": float((hit / torch.log2(rank.double() + 2)).mean()),
        f"ref_{stage}_hr10_pessimistic": float((pessimistic < 10).float().mean()),
        f"ref_{stage}_target_drawn": int((candidates[:, 1:] == targets[:, None]).any(1).sum()),
    }


# --------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="ml-100k", help="recgym dataset name or path")
    p.add_argument("--data-dir", default=DEFAULT_DATA)
    p.add_argument("--maxlen", type=int, default=200, help="reference default (ml-1m): 200")
    p.add_argument("--hidden-units", type=int, default=50, help="reference default: 50")
    p.add_argument("--num-blocks", type=int, default=2)
    p.add_argument("--num-heads", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--norm-first", action="store_true", help="the reference's pre-LN option")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--l2-emb", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20, help="reference: every 20 epochs")
    p.add_argument("--sampler-workers", type=int, default=3, help="reference: 3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="CSV, one row per evaluation")
    return p.parse_args(argv)


def build(args: argparse.Namespace, split: Split) -> ReferenceSASRec:
    torch.manual_seed(args.seed)  # init and dropout use the global RNG, as in the reference
    model = ReferenceSASRec(
        split.dataset.n_items,
        maxlen=args.maxlen,
        hidden_units=args.hidden_units,
        num_blocks=args.num_blocks,
        num_heads=args.num_heads,
        dropout_rate=args.dropout,
        norm_first=args.norm_first,
    )
    model.init_like_reference()
    return model


def evaluate_all(model, split, args, epoch, loss, train_s, eval_rng) -> dict:
    row = {"epoch": epoch, "loss": loss, "train_s": round(train_s, 1)}
    row.update(recgym_metrics(model, split, args.maxlen))
    row.update(reference_protocol(model, split, "valid", args.maxlen, eval_rng))
    row.update(reference_protocol(model, split, "test", args.maxlen, eval_rng))
    return row


def run(args: argparse.Namespace) -> pd.DataFrame:
    torch.set_num_threads(args.threads)
    split = leave_one_out(load_dataset(args.data, data_dir=args.data_dir))
    sequences = train_sequences(split)
    model = build(args, split)
    sampler = ReferenceSampler(
        sequences, split.dataset.n_items, batch_size=args.batch_size, maxlen=args.maxlen,
        seed=args.seed, n_workers=args.sampler_workers,
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98))
    n_batches = math.ceil(len(sequences) / args.batch_size)
    eval_rng = np.random.default_rng([args.seed, 1])
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")}
    rows, train_s = [], 0.0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(model, sampler, optimizer, n_batches, args.l2_emb)
        train_s += time.perf_counter() - start
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            r = evaluate_all(model, split, args, epoch, loss, train_s, eval_rng)
            rows.append({**settings, **r})
            print(
                f"epoch {epoch} loss {loss:.4f} train {train_s:.0f}s | valid full NDCG@10 "
                f"{r['valid_full_ndcg10']:.4f} | test full HR/NDCG@10 {r['test_full_hr10']:.4f}/"
                f"{r['test_full_ndcg10']:.4f} u100 {r['test_u100_hr10']:.4f}/"
                f"{r['test_u100_ndcg10']:.4f} | ref-protocol test {r['ref_test_hr10']:.4f}/"
                f"{r['ref_test_ndcg10']:.4f}",
                flush=True,
            )
            frame = pd.DataFrame(rows)
            if args.out is not None:
                frame.to_csv(args.out, index=False)
    return frame


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """The final evaluation and the best-validation one (first maximum of full NDCG@10)."""
    best = frame.loc[frame.valid_full_ndcg10.idxmax()]
    out = pd.DataFrame([frame.iloc[-1], best], index=["final", "best_valid"])
    cols = ["epoch", "valid_full_ndcg10", "test_full_hr10", "test_full_ndcg10"]
    cols += ["test_u100_hr10", "test_u100_ndcg10", "ref_test_hr10", "ref_test_ndcg10"]
    return out[cols]


if __name__ == "__main__":
    result = run(parse_args())
    print(summary(result).to_string())
