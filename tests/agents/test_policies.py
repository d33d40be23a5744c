"""SASRec and GRU policies: shapes, causality, padding invariance, tied output, masks, I/O."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recgym
from agents.gru import GRUConfig, GRUPolicy
from agents.sasrec import SASRecConfig, SASRecPolicy
from recgym.errors import RecGymError

N_ITEMS = 30
MAX_LEN = 12


def make_policy(kind: str, **overrides) -> torch.nn.Module:
    if kind == "sasrec":
        config = SASRecConfig(max_len=MAX_LEN, dim=16, n_blocks=2, n_heads=2, **overrides)
        return SASRecPolicy(config, n_items=N_ITEMS)
    config = GRUConfig(max_len=MAX_LEN, dim=16, hidden_size=24, n_layers=2, **overrides)
    return GRUPolicy(config, n_items=N_ITEMS)


KINDS = ("sasrec", "gru")


def histories(batch: int = 4, length: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(1, N_ITEMS + 1, (batch, length), generator=g)
    history[1, :3] = 0  # left padding of different amounts
    history[2, :-1] = 0
    return history


@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind):
    policy = make_policy(kind).eval()
    history = histories()
    assert policy.encode(history).shape == (4, 8, 16)
    assert policy(history).shape == (4, N_ITEMS + 1)
    assert policy.all_logits(history).shape == (4, 8, N_ITEMS + 1)
    assert torch.allclose(policy.all_logits(history)[:, -1], policy(history), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_positions_have_zero_state(kind):
    policy = make_policy(kind).train()  # even with dropout on
    history = histories()
    states = policy.encode(history)
    assert torch.all(states[history == 0] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_causal(kind):
    policy = make_policy(kind).eval()
    history = histories()
    rows = [0, 1, 3]  # row 2 is padding at position 5
    changed = history.clone()
    changed[rows, 5] = (changed[rows, 5] % N_ITEMS) + 1
    before, after = policy.encode(history), policy.encode(changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    for t in range(5, 8):
        assert not torch.allclose(before[rows, t], after[rows, t], atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_extra_left_padding_changes_nothing(kind, data):
    torch.manual_seed(0)
    policy = make_policy(kind).eval()
    n = data.draw(st.integers(1, 6))
    extra = data.draw(st.integers(1, MAX_LEN - n))
    items = data.draw(st.lists(st.integers(1, N_ITEMS), min_size=n, max_size=n))
    short = torch.tensor([items])
    padded = torch.cat([torch.zeros(1, extra, dtype=torch.int64), short], dim=1)
    assert torch.allclose(policy(short), policy(padded), atol=1e-5)
    # and every real position's state equals the one of its own prefix
    states = policy.encode(padded)[0, extra:]
    prefix_last = torch.stack([policy.encode(short[:, : t + 1])[0, -1] for t in range(n)])
    assert torch.allclose(states, prefix_last, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_output_is_tied_to_the_item_embedding(kind):
    policy = make_policy(kind).eval()
    assert policy.item_table() is policy.item_embedding.weight
    history = histories()
    expected = policy.encode(history)[:, -1] @ policy.item_embedding.weight.T
    assert torch.allclose(policy(history), expected, atol=1e-6)
    # no separate output matrix over the catalogue
    shapes = [p.shape for name, p in policy.named_parameters() if name != "item_embedding.weight"]
    assert all(N_ITEMS + 1 not in s for s in shapes)
    assert torch.all(policy.item_embedding.weight[0] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_delta_perturbs_the_input_and_gets_a_gradient(kind):
    policy = make_policy(kind).eval()
    history = histories()
    zero = torch.zeros_like(policy.item_embedding.weight, requires_grad=True)
    assert torch.allclose(policy.encode(history, delta=zero), policy.encode(history))
    policy(history, delta=zero).sum().backward()
    assert zero.grad is not None and zero.grad.abs().sum() > 0
    bump = torch.zeros_like(zero)
    # random, not constant: a pre-LN model ignores a constant shift of a residual vector
    bump[history[0, -1]] = torch.randn(bump.shape[1], generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(policy.encode(history, delta=bump), policy.encode(history))


@pytest.mark.parametrize("kind", KINDS)
def test_distribution_masks_padding_and_seen_items(kind, generator):
    policy = make_policy(kind).eval()
    history = histories()
    probs = policy.distribution(history).probs
    assert torch.all(probs[:, 0] == 0)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    seen = policy.distribution(history, exclude_seen=True).probs
    assert torch.all(seen.gather(1, history) == 0)
    actions = policy.act(history, generator, exclude_seen=True)
    assert torch.all((actions >= 1) & (actions <= N_ITEMS))
    assert not torch.any(actions.unsqueeze(1) == history)


@pytest.mark.parametrize("kind", KINDS)
def test_recgym_evaluate_runs(kind, tiny_split):
    policy = SASRecPolicy if kind == "sasrec" else GRUPolicy
    config = SASRecConfig(max_len=5, dim=8) if kind == "sasrec" else GRUConfig(max_len=5, dim=8)
    model = policy(config, n_items=tiny_split.dataset.n_items)
    frame = recgym.evaluate(model, tiny_split, "test", protocols=("full", "uniform-3"), max_len=5)
    assert set(frame["protocol"]) == {"full", "uniform-3"}
    assert frame["value"].between(0, 1).all()
    assert model.training  # evaluation restores the mode


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_identical(kind, tmp_path):
    policy = make_policy(kind, dropout=0.1).eval()
    path = policy.save(tmp_path / "policy.pt")
    loaded = type(policy).load(path)
    assert loaded.config == policy.config
    history = histories()
    assert torch.equal(loaded.eval()(history), policy(history))


def test_load_refuses_the_other_class(tmp_path):
    path = make_policy("sasrec").save(tmp_path / "sasrec.pt")
    with pytest.raises(RecGymError, match="holds a 'sasrec'; expected a 'gru'"):
        GRUPolicy.load(path)


def test_gru_projection_and_left_padding_check():
    policy = make_policy("gru").eval()
    assert isinstance(policy.projection, torch.nn.Linear)  # hidden 24 -> dim 16
    with pytest.raises(ValueError, match="left-padded"):
        policy.encode(torch.tensor([[1, 0, 2]]))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SASRecConfig(dim=10, n_heads=3), "must divide dim"),
        (lambda: SASRecConfig(n_blocks=0), "n_blocks"),
        (lambda: SASRecConfig(dropout=1.0), "dropout"),
        (lambda: GRUConfig(n_layers=0), "n_layers"),
        (lambda: GRUConfig(hidden_size=2.5), "hidden_size"),
    ],
)
def test_config_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_history_checks():
    policy = make_policy("sasrec")
    with pytest.raises(ValueError, match="max_len"):
        policy(torch.ones(1, MAX_LEN + 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="item ids"):
        policy(torch.tensor([[N_ITEMS + 1]]))
    with pytest.raises(TypeError, match="SASRecConfig"):
        SASRecPolicy(GRUConfig(), n_items=3)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", KINDS)
def test_cpu_and_cuda_agree(kind):
    policy = make_policy(kind).eval()
    history = histories()
    with torch.no_grad():
        expected = policy(history)
        got = policy.to("cuda")(history.to("cuda")).cpu()
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", [SASRecPolicy, GRUPolicy])
def test_seed_fixes_the_weights_and_keeps_the_callers_rng(cls):
    before = torch.random.get_rng_state()
    a, b = cls(n_items=30, seed=3), cls(n_items=30, seed=3)
    c = cls(n_items=30, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream untouched
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    pairs = zip(a.parameters(), c.parameters(), strict=True)
    assert not all(torch.equal(pa, pc) for pa, pc in pairs)
    with pytest.raises(ValueError, match="seed must be None or an int >= 0; got -1"):
        cls(n_items=30, seed=-1)


@pytest.mark.parametrize("cls", [SASRecPolicy, GRUPolicy])
def test_device_argument_places_the_policy(cls):
    assert cls(n_items=30, seed=0, device="cpu").device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, ValueError), match="CUDA"):
            cls(n_items=30, seed=0, device="cuda")


@pytest.mark.parametrize("kind", KINDS)
def test_one_masking_rule_for_the_policy_the_rollouts_and_the_metrics(kind):
    """A window holding every item keeps all items (a repeat is forced), everywhere alike."""
    from agents.actions import action_logits, next_log_probs
    from recgym.rollout import mask_scores

    n_items = 8  # <= MAX_LEN: a window can hold the whole catalogue
    if kind == "sasrec":
        policy = SASRecPolicy(SASRecConfig(max_len=MAX_LEN, dim=16, n_blocks=1), n_items=n_items)
    else:
        policy = GRUPolicy(GRUConfig(max_len=MAX_LEN, dim=16, hidden_size=16), n_items=n_items)
    policy.eval()
    g = torch.Generator().manual_seed(0)
    history = torch.randint(1, n_items + 1, (4, MAX_LEN), generator=g)
    history[0, -n_items:] = torch.randperm(n_items, generator=g) + 1  # every item seen
    history[0, :-n_items] = 0
    with torch.no_grad():
        raw = policy(history)
        masked = policy.masked_logits(history, exclude_seen=True)
        assert torch.equal(action_logits(raw, history, exclude_seen=True), masked)
        assert torch.equal(mask_scores(raw, history, exclude_seen=True), masked)
        log_pi = next_log_probs(policy, history, exclude_seen=True)
    torch.testing.assert_close(log_pi, torch.log_softmax(masked, dim=1))
    assert torch.isfinite(masked[0, 1:]).all()  # the full window keeps every item
    assert torch.equal(torch.isinf(masked[1:, 1:]), (history[1:].unsqueeze(2) ==
                       torch.arange(1, n_items + 1)).any(1))  # fmt: skip
    action = policy.act(history, exclude_seen=True)
    assert torch.isfinite(policy.log_prob(history, action, exclude_seen=True)).all()
