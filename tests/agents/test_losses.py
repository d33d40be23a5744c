"""The fused chunked cross-entropy, the learning-rate schedules and their MLEConfig fields."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from agents.losses import chunked_cross_entropy, sequence_loss
from agents.mle import MLEConfig, MLETrainer
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.schedules import lr_factor
from recgym import SyntheticConfig, leave_one_out, make_synthetic


def _dense(states, table, targets, weights=None):
    logits = states @ table.T
    logits[:, 0] = float("-inf")
    if weights is None:
        return F.cross_entropy(logits, targets)
    return (F.cross_entropy(logits, targets, reduction="none") * weights).mean()


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
@pytest.mark.parametrize("weighted", [False, True])
def test_chunked_ce_matches_dense_loss_and_gradients(chunk, weighted):
    g = torch.Generator().manual_seed(0)
    states = torch.randn(53, 8, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(20, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 20, (53,), generator=g)
    weights = torch.rand(53, generator=g, dtype=torch.float64) if weighted else None
    dense = _dense(states, table, targets, weights)
    fused = chunked_cross_entropy(states, table, targets, weights=weights, chunk_size=chunk)
    torch.testing.assert_close(fused, dense)
    fused_grads = torch.autograd.grad(fused, (states, table))
    for a, b in zip(torch.autograd.grad(dense, (states, table)), fused_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert fused_grads[1][0].abs().sum() == 0  # the padding row is never a class


def test_chunked_ce_errors_and_scaled_upstream_gradient():
    states, table = torch.randn(4, 3, requires_grad=True), torch.randn(5, 3)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1; got 0"):
        chunked_cross_entropy(states, table, torch.ones(4, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="share D"):
        chunked_cross_entropy(states, torch.randn(5, 2), torch.ones(4, dtype=torch.long))
    y = torch.tensor([1, 2, 3, 4])
    (grad,) = torch.autograd.grad(3.0 * chunked_cross_entropy(states, table, y), states)
    (dense,) = torch.autograd.grad(3.0 * _dense(states, table, y), states)
    torch.testing.assert_close(grad, dense)


def test_sequence_loss_chunked_equals_dense_with_delta_and_weights():
    policy = SASRecPolicy(SASRecConfig(max_len=6, dim=8, dropout=0.0), n_items=30, seed=0)
    g = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 31, (5, 6), generator=g)
    targets = torch.randint(0, 31, (5, 6), generator=g) * (inputs > 0)
    delta = 0.01 * torch.randn(31, 8, generator=g)
    w = torch.rand(5, generator=g)
    kw = {"delta": delta, "weights": w}
    torch.testing.assert_close(
        sequence_loss(policy, inputs, targets, chunk_size=4, **kw),
        sequence_loss(policy, inputs, targets, **kw),
    )


def test_lr_factor():
    assert lr_factor("constant", 0.5, warmup=0.0, horizon=10) == 1.0
    assert lr_factor("constant", 0.5, warmup=2.0, horizon=10) == 0.25
    assert lr_factor("cosine", 2.0, warmup=2.0, horizon=10) == 1.0
    assert lr_factor("cosine", 6.0, warmup=2.0, horizon=10) == pytest.approx(0.5)
    assert lr_factor("cosine", 12.0, warmup=2.0, horizon=10) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor("linear", 1.0, warmup=0.0, horizon=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss_chunk": 0}, "MLEConfig.loss_chunk must be an int >= 1; got 0"),
        (
            {"lr_schedule": "step"},
            r"lr_schedule must be one of \('constant', 'cosine'\); got 'step'",
        ),
        ({"warmup_epochs": -1.0}, "MLEConfig.warmup_epochs must be"),
        ({"schedule_epochs": 0}, "MLEConfig.schedule_epochs must be an int >= 1; got 0"),
        ({"lr_schedule": "cosine", "epochs": 3, "warmup_epochs": 3}, "must exceed warmup_epochs=3"),
    ],
)
def test_schedule_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLEConfig(**kwargs)


def test_trainer_follows_the_schedule_per_step():
    synthetic = make_synthetic(SyntheticConfig(n_users=60, n_items=40, max_seq_len=20), seed=0)
    split = leave_one_out(synthetic.dataset)
    policy = SASRecPolicy(SASRecConfig(max_len=8, dim=8), n_items=split.dataset.n_items, seed=0)
    config = MLEConfig(epochs=4, batch_size=16, lr=0.01, lr_schedule="cosine", warmup_epochs=1.0)
    trainer = MLETrainer(policy, split, config)
    seen = []
    step = trainer._step
    trainer._step = lambda *a, **k: (
        seen.append(trainer.optimizer.param_groups[0]["lr"]),
        step(*a, **k),
    )[1]
    trainer.fit()
    per_epoch = len(seen) // 4
    assert seen[per_epoch - 1] == pytest.approx(0.01)  # warm-up ends with the first epoch
    assert seen[0] == pytest.approx(0.01 / per_epoch)
    assert seen[-1] == pytest.approx(0.0, abs=1e-12)  # the cosine reaches 0 at `epochs`
    assert all(b <= a for a, b in zip(seen[per_epoch:], seen[per_epoch + 1 :], strict=False))
    assert math.isfinite(trainer.validate()["eval/NDCG@10"])


def test_chunked_ce_in_bfloat16_is_close_to_float32():
    g = torch.Generator().manual_seed(3)
    states = torch.randn(300, 32, generator=g, requires_grad=True)
    table = torch.randn(501, 32, generator=g, requires_grad=True)
    targets = torch.randint(1, 501, (300,), generator=g)
    exact = chunked_cross_entropy(states, table, targets, chunk_size=64)
    low = chunked_cross_entropy(states, table, targets, chunk_size=64, matmul_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    # bf16's 8-bit mantissa in the logits
    assert abs(float((low - exact).detach())) < 0.02 * float(exact.detach())
    grads = torch.autograd.grad(exact, (states, table)), torch.autograd.grad(low, (states, table))
    for a, b in zip(*grads, strict=True):
        assert a.dtype == b.dtype == torch.float32
        assert F.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99
    with pytest.raises(ValueError, match="matmul_dtype must be"):
        chunked_cross_entropy(states, table, targets, matmul_dtype=torch.float16)


def test_mle_config_rejects_unknown_speed_settings():
    with pytest.raises(ValueError, match="loss_dtype must be one of"):
        MLEConfig(loss_dtype="float16")
    with pytest.raises(ValueError, match="batching must be one of"):
        MLEConfig(batching="sorted")
    with pytest.raises(TypeError, match="trim_padding must be a bool"):
        MLEConfig(trim_padding=1)
    with pytest.raises(TypeError, match="compile_loss must be a bool"):
        MLEConfig(compile_loss="yes")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_softmax_step_gives_the_dense_loss_and_gradients(dtype):
    # the compiled path (one fused kernel per chunk) against the dense loss: weighted rows,
    # a ragged last chunk (dynamic shapes) and a loss without gradients
    g = torch.Generator().manual_seed(4)
    states = torch.randn(53, 8, generator=g, dtype=dtype, requires_grad=True)
    table = torch.randn(20, 8, generator=g, dtype=dtype, requires_grad=True)
    targets = torch.randint(1, 20, (53,), generator=g)
    weights = torch.rand(53, generator=g, dtype=dtype)
    for w in (None, weights):
        dense = _dense(states, table, targets, w)
        fused = chunked_cross_entropy(
            states, table, targets, weights=w, chunk_size=16, compiled=True
        )
        torch.testing.assert_close(fused, dense)
        pairs = zip(
            torch.autograd.grad(dense, (states, table)),
            torch.autograd.grad(fused, (states, table)),
            strict=True,
        )
        for a, b in pairs:
            torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(
            chunked_cross_entropy(states, table, targets, chunk_size=16, compiled=True),
            _dense(states, table, targets),
        )
    with pytest.raises(TypeError, match="compiled must be a bool"):
        chunked_cross_entropy(states, table, targets, compiled=1)
