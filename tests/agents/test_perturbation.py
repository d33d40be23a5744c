"""APR / SAO fast-gradient perturbations and adversarial (SAO) training."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agents.mle import MLEConfig, MLETrainer, sequence_loss
from agents.perturbation import (
    PerturbationConfig,
    adversarial_loss,
    fast_gradient_delta,
    split_delta,
)
from agents.sasrec import SASRecConfig, SASRecPolicy
from recgym import SyntheticConfig, leave_one_out, make_synthetic


# --------------------------------------------------------------------------- fast gradient
@settings(max_examples=40, deadline=None)
@given(
    grad=arrays("float32", (6, 4), elements=st.floats(-1e3, 1e3, width=32)),
    eps=st.floats(0.01, 5.0),
)
def test_delta_has_norm_eps_per_row_with_a_gradient(grad, eps):
    grad = torch.from_numpy(grad)
    grad[2] = 0.0
    delta = fast_gradient_delta(grad, eps)
    norms = delta.norm(dim=1)
    assert torch.all(delta[0] == 0)  # padding row
    assert torch.all(delta[2] == 0)  # zero gradient
    nonzero = grad.abs().amax(dim=1) > 0
    nonzero[0] = False
    assert torch.allclose(norms[nonzero], torch.full_like(norms[nonzero], eps), rtol=1e-4)
    # same direction as the gradient
    rows = grad[nonzero] / grad[nonzero].abs().amax(dim=1, keepdim=True)  # avoid underflow
    cos = torch.nn.functional.cosine_similarity(delta[nonzero], rows, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)


def test_tiny_gradients_still_give_norm_eps():
    grad = torch.tensor([[0.0, 0.0], [1e-30, -1e-30], [3.0, 4.0]])
    delta = fast_gradient_delta(grad, 0.5, padding_idx=None)
    assert torch.allclose(delta.norm(dim=1), torch.tensor([0.0, 0.5, 0.5]))
    assert torch.allclose(delta[2], torch.tensor([0.3, 0.4]))


def test_fast_gradient_errors():
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        fast_gradient_delta(torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="eps"):
        fast_gradient_delta(torch.ones(3, 2), 0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -1.0}, "eps"),
        ({"lam": -0.1}, "lam"),
        ({"targets": ()}, "targets"),
        ({"targets": ("input", "hidden")}, "targets"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerturbationConfig(**kwargs)


def test_config_normalises_targets():
    assert PerturbationConfig(targets="input").targets == ("input",)
    assert PerturbationConfig(targets=["output", "input"]).targets == ("output", "input")
    assert split_delta(torch.ones(1), ("input",))[1] is None
    assert split_delta(None) == (None, None)


# --------------------------------------------------------------------------- adversarial loss
def _toy():
    g = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(torch.randn(5, 3, generator=g))
    weights, y = torch.randn(3, generator=g), torch.randn(5, generator=g)

    def loss_fn(delta):  # convex in the table: the first-order step can only raise it
        return (((table + delta) @ weights - y) ** 2).sum()

    return table, loss_fn


def test_adversarial_loss_is_at_least_the_clean_loss():
    table, loss_fn = _toy()
    out = adversarial_loss(loss_fn, table, PerturbationConfig(eps=0.3, lam=2.0), padding_idx=None)
    assert out.adversarial.item() >= out.clean.item()
    assert torch.allclose(out.total, out.clean + 2.0 * out.adversarial)
    assert not out.delta.requires_grad
    out.total.backward()
    assert table.grad is not None and torch.isfinite(table.grad).all()


def test_adversarial_loss_over_several_tables():
    """APR on MF-BPR: user and item tables perturbed together, each row by eps."""
    g = torch.Generator().manual_seed(0)
    users = torch.nn.Parameter(torch.randn(4, 3, generator=g))
    items = torch.nn.Parameter(torch.randn(6, 3, generator=g))
    u, i, j = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 5, 1])

    def bpr(deltas):
        du, di = deltas
        pu, ti = users + du, items + di
        return -torch.nn.functional.logsigmoid((pu[u] * (ti[i] - ti[j])).sum(-1)).mean()

    cfg = PerturbationConfig(eps=0.5)
    out = adversarial_loss(bpr, (users, items), cfg, padding_idx=None)
    du, di = out.delta
    assert torch.allclose(du[:3].norm(dim=1), torch.full((3,), 0.5))
    assert torch.all(du[3] == 0)  # user 3 is not in the batch
    assert torch.all(di[0] == 0) and torch.allclose(di[1:].norm(dim=1), torch.full((5,), 0.5))
    assert out.adversarial.item() >= out.clean.item()


@pytest.mark.parametrize("targets", [("input",), ("output",), ("input", "output")])
def test_sasrec_perturbation_targets(targets):
    torch.manual_seed(0)
    policy = SASRecPolicy(SASRecConfig(max_len=6, dim=8, n_blocks=1), n_items=12).eval()
    inputs = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 7, 8, 9, 10]])
    targets_ = torch.tensor([[0, 2, 3, 4, 5, 6], [0, 0, 8, 9, 10, 11]])

    def loss_fn(delta):
        return sequence_loss(policy, inputs, targets_, delta=delta, where=targets)

    out = adversarial_loss(
        loss_fn, policy.item_embedding.weight, PerturbationConfig(eps=0.05, targets=targets)
    )
    assert out.adversarial.item() >= out.clean.item()
    used = torch.zeros(13, dtype=torch.bool)
    if "input" in targets:
        used[inputs[inputs > 0]] = True
    if "output" in targets:
        used[1:] = True  # the full softmax touches every item's output embedding
    norms = out.delta.norm(dim=1)
    assert torch.allclose(norms[used], torch.full((int(used.sum()),), 0.05), atol=1e-6)
    assert torch.all(norms[~used] == 0)  # incl. padding row 0, and unused input rows


def test_sao_training_runs_and_reduces_the_loss():
    split = leave_one_out(
        make_synthetic(SyntheticConfig(n_users=120, n_items=60, max_seq_len=25), seed=0).dataset
    )
    torch.manual_seed(0)
    policy = SASRecPolicy(SASRecConfig(max_len=20, dim=16, n_blocks=1), n_items=60)
    config = MLEConfig(epochs=3, lr=3e-3, batch_size=64)
    result = MLETrainer(policy, split, config, perturbation=PerturbationConfig(eps=0.5)).fit()
    history = result.history
    assert {"mle/clean_loss", "mle/adv_loss"} <= set(history.columns)
    assert history["mle/loss"].iloc[-1] < history["mle/loss"].iloc[0]
    assert history["mle/clean_loss"].iloc[-1] < history["mle/clean_loss"].iloc[0]
    assert (history["mle/adv_loss"] >= history["mle/clean_loss"]).all()
    assert torch.all(policy.item_embedding.weight[0] == 0)


def test_adversarial_loss_errors():
    table, loss_fn = _toy()
    with pytest.raises(TypeError, match="PerturbationConfig"):
        adversarial_loss(loss_fn, table, {"eps": 0.5})
    with pytest.raises(ValueError, match="scalar"):
        adversarial_loss(lambda d: (table + d).sum(1), table, PerturbationConfig())
    with pytest.raises(ValueError, match="padding_idx"):
        adversarial_loss(loss_fn, (table, table), PerturbationConfig(), padding_idx=(0,))
