"""The adversarial loop: end-to-end rounds, logging, checkpoints, exact resumption."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import agents.adversarial as adversarial
from agents.adversarial import AdversarialTrainer
from agents.adversarial_config import AdversarialConfig
from agents.adversarial_steps import GreedyTopKNegatives, PolicyNegatives
from agents.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from agents.early_stopping import validation_metrics
from agents.reinforce import PGConfig
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.weighted_mle import WeightedMLEConfig, WeightedMLEGenerator
from recgym import BatchedRecEnv, EnvConfig, HitReward
from recgym._torch_io import evaluating
from recgym.errors import RecGymError
from rewards import (
    EnergyConfig,
    EnergyDiscriminator,
    MultiFactorConfig,
    MultiFactorDiscriminator,
    RewardFormWrapper,
)
from rewards.negatives import real_sequences

ROUND_COLUMNS = [
    "round",
    "policy/loss",
    "policy/entropy",
    "reward/mean",
    "reward/std",
    "disc/loss",
    "disc/accuracy",
    "disc/auc",
    "rollout/coverage",
    "rollout/gini",
    "eval/HR@10",
    "eval/NDCG@10",
    "time/round_s",
]


def make_policy(seed: int = 0, dim: int = 16) -> SASRecPolicy:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SASRecPolicy(SASRecConfig(max_len=20, dim=dim, n_blocks=1), n_items=60)


def make_reward(kind: str, split):
    if kind == "energy":
        return EnergyDiscriminator(EnergyConfig(dim=16, max_len=20), n_items=60, seed=0)
    return MultiFactorDiscriminator(MultiFactorConfig(dim=16, max_len=20), split.factors(), seed=0)


def small_config(tmp_path, **overrides) -> AdversarialConfig:
    settings = {
        "n_rounds": 2,
        "rollout_batch_size": 32,
        "horizon": 3,
        "max_len": 20,
        "d_batch_size": 32,
        "n_eval_users": 32,
        "policy_lr": 1e-3,
        "disc_lr": 1e-3,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "log_dir": str(tmp_path / "tb"),
    }
    settings.update(overrides)
    return AdversarialConfig(**settings)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("multifactor", {}),
        ("energy", {"maxent": True, "alpha": 0.05, "negatives": "replace_last"}),
        ("multifactor", {"negatives": "greedy_topk", "n_fakes": 4}),
    ],
)
def test_two_rounds_end_to_end(tmp_path, synthetic, kind, overrides):
    data, split = synthetic
    config = small_config(tmp_path, **overrides)
    trainer = AdversarialTrainer(
        make_policy(), make_reward(kind, split), split, config, user_model=data.user_model
    )
    frame = trainer.train()
    assert frame["round"].tolist() == [0, 1, 2]  # round 0: the starting policy, evaluated
    assert set(ROUND_COLUMNS + ["eval/oracle_loglik"]) <= set(frame.columns)
    assert frame.iloc[1:].drop(columns=["time/round_s"]).notna().all().all()
    assert ((frame["disc/auc"].iloc[1:] >= 0) & (frame["disc/auc"].iloc[1:] <= 1)).all()
    assert (frame["eval/oracle_loglik"] < 0).all()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert checkpoint["round"] == 2 and len(checkpoint["extra"]["history"]) == 3
    assert checkpoint["best_metric"] == frame["eval/NDCG@10"].max()


def test_rewards_come_from_the_reward_model(tmp_path, synthetic):
    data, split = synthetic
    reward_model = make_reward("energy", split)
    trainer = AdversarialTrainer(make_policy(), reward_model, split, small_config(tmp_path))
    trainer.pg.step()
    rollout = trainer.pg.last_rollout
    expected = reward_model.reward(rollout.sequences().reshape(-1, 20)).view(3, 32)
    assert torch.allclose(rollout.rewards, expected)
    assert bool((rollout.rewards <= 0).all())  # -energy


def test_pretraining_runs_mle_then_the_reward_model(tmp_path, synthetic):
    data, split = synthetic
    policy, reward_model = make_policy(), make_reward("multifactor", split)
    before = {k: v.clone() for k, v in reward_model.state_dict().items()}
    config = small_config(
        tmp_path, n_rounds=1, pretrain_policy_epochs=1, pretrain_reward_epochs=1, log_dir=None
    )
    trainer = AdversarialTrainer(policy, reward_model, split, config)
    trainer.pretrain()
    assert trainer.pretrained
    assert any(not torch.equal(before[k], v) for k, v in reward_model.state_dict().items())
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["round"] == 0
    assert trainer.frame()["round"].tolist() == [0]
    assert len(trainer.train()) == 2


def test_policy_negatives_keep_the_real_prefix(synthetic):
    data, split = synthetic
    sampler = PolicyNegatives(make_policy(), 3, exclude_seen=False)
    real = torch.randint(1, 61, (16, 20), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    fake = sampler.sample(real, generator)
    assert fake.shape == real.shape
    changed = (fake != real).any(0).nonzero().flatten()
    assert changed.numel() and int(changed.min()) >= 17  # at most the last 3 columns


# ----------------------------------------------------------------------------- resumption
def _run(tmp_path, split, n_rounds, crash_at=None, monkeypatch=None, **overrides):
    config = small_config(
        tmp_path, n_rounds=n_rounds, g_steps=2, d_steps=2, log_dir=None, **overrides
    )
    trainer = AdversarialTrainer(make_policy(), make_reward("multifactor", split), split, config)
    if crash_at is not None:
        original = adversarial.discriminator_step

        def crashing(*args, **kwargs):
            if trainer.round + 1 == crash_at:
                raise KeyboardInterrupt("simulated interruption")
            return original(*args, **kwargs)

        monkeypatch.setattr(adversarial, "discriminator_step", crashing)
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        monkeypatch.setattr(adversarial, "discriminator_step", original)
        return trainer
    trainer.train()
    return trainer


MODES = {
    "policy_gradient": {},
    "weighted_mle": {"generator_update": "weighted_mle",
                     "weighted_mle": WeightedMLEConfig(batch_size=32, weights="permuted")},
}  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_resume_after_an_interruption_gives_the_same_weights(
    tmp_path, synthetic, monkeypatch, mode
):
    data, split = synthetic
    straight = _run(tmp_path / "a", split, n_rounds=3, **MODES[mode])
    crashed = _run(tmp_path / "b", split, n_rounds=3, crash_at=3, monkeypatch=monkeypatch,
                   **MODES[mode])  # fmt: skip
    assert crashed.round == 2
    config = small_config(tmp_path / "b", n_rounds=3, g_steps=2, d_steps=2, log_dir=None,
                          **MODES[mode])  # fmt: skip
    resumed = AdversarialTrainer.resume(
        tmp_path / "b" / "checkpoints" / "last.pt",
        make_policy(seed=123),  # different initial weights: everything must come from the file
        make_reward("multifactor", split),
        split,
        config,
    )
    assert resumed.round == 2
    frame = resumed.train()
    for a, b in ((straight.policy, resumed.policy), (straight.reward_model, resumed.reward_model)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
    expected = straight.frame().drop(columns=["time/round_s"])
    assert frame["round"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(frame.drop(columns=["time/round_s"]).to_numpy(), expected.to_numpy())


def test_resume_refuses_a_changed_config(tmp_path, synthetic):
    data, split = synthetic
    trainer = AdversarialTrainer(
        make_policy(), make_reward("multifactor", split), split, small_config(tmp_path, n_rounds=1)
    )
    trainer.train()
    path = tmp_path / "checkpoints" / "last.pt"
    more_rounds = small_config(tmp_path, n_rounds=2)
    AdversarialTrainer.resume(
        path, make_policy(), make_reward("multifactor", split), split, more_rounds
    )
    with pytest.raises(ValueError, match="horizon: 3 -> 4"):
        AdversarialTrainer.resume(
            path, make_policy(), make_reward("multifactor", split), split,
            small_config(tmp_path, horizon=4),
        )  # fmt: skip


def test_the_starting_policy_competes_for_best(tmp_path, synthetic):
    data, split = synthetic
    trainer = AdversarialTrainer(
        make_policy(), make_reward("multifactor", split), split,
        small_config(tmp_path, n_rounds=2, policy_lr=0.5, log_dir=None),
    )  # fmt: skip
    with pytest.raises(RecGymError, match="train"):
        trainer.restore_best()
    frame = trainer.train()
    best = trainer.restore_best()
    assert best == frame["eval/NDCG@10"].max() >= frame["eval/NDCG@10"].iloc[0]
    restored = validation_metrics(trainer.policy, split, max_len=20, batch_size=64,
                                  device=trainer.device)  # fmt: skip
    assert restored["eval/NDCG@10"] == pytest.approx(best)
    resumed = AdversarialTrainer.resume(
        tmp_path / "checkpoints" / "last.pt", make_policy(seed=5),
        make_reward("multifactor", split), split,
        small_config(tmp_path, n_rounds=2, policy_lr=0.5, log_dir=None),
    )  # fmt: skip
    assert resumed.restore_best() == best
    for x, y in zip(resumed.policy.parameters(), trainer.policy.parameters(), strict=True):
        assert torch.equal(x, y)


def test_evaluate_start_off_keeps_only_rounds(tmp_path, synthetic):
    data, split = synthetic
    config = small_config(tmp_path, n_rounds=1, evaluate_start=False, log_dir=None)
    trainer = AdversarialTrainer(make_policy(), make_reward("energy", split), split, config)
    assert trainer.train()["round"].tolist() == [1]


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_with_weights_only(tmp_path):
    policy = make_policy()
    optimizer = torch.optim.Adam(policy.parameters())
    policy(torch.ones(2, 3, dtype=torch.int64)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    rng = np.random.default_rng(7)
    checkpoint = make_checkpoint(
        policy=policy, reward_model=None, optimizers={"policy": optimizer},
        generators={"g": generator}, numpy_rng=rng, round=4, best_metric=0.5,
        extra={"note": "x", "values": [1.0, float("nan")]},
    )  # fmt: skip
    path = save_checkpoint(tmp_path / "ck.pt", checkpoint)
    torch.load(path, weights_only=True)  # plain tensors and containers only
    expected_draw, expected_np = torch.rand(3, generator=generator), rng.random(3)

    loaded = load_checkpoint(path)
    other = make_policy(seed=9)
    other_opt = torch.optim.Adam(other.parameters())
    other_gen, other_rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    restore_checkpoint(
        loaded, policy=other, reward_model=None, optimizers={"policy": other_opt},
        generators={"g": other_gen}, numpy_rng=other_rng,
    )  # fmt: skip
    assert loaded["round"] == 4 and loaded["best_metric"] == 0.5
    assert torch.equal(torch.rand(3, generator=other_gen), expected_draw)
    assert np.array_equal(other_rng.random(3), expected_np)
    for x, y in zip(policy.parameters(), other.parameters(), strict=True):
        assert torch.equal(x, y)
    assert other_opt.state_dict()["state"][0]["step"] == 1


def test_checkpoint_mismatches_raise_clear_errors(tmp_path):
    policy = make_policy()
    optimizer = torch.optim.Adam(policy.parameters())
    parts = {"optimizers": {"policy": optimizer}, "generators": {"g": torch.Generator()}}
    checkpoint = make_checkpoint(policy=policy, reward_model=None, **parts)
    path = save_checkpoint(tmp_path / "ck.pt", checkpoint)
    loaded = load_checkpoint(path)
    wider = make_policy(dim=32)
    with pytest.raises(RecGymError, match="weights do not fit"):
        restore_checkpoint(loaded, policy=wider, reward_model=None, **parts)
    with pytest.raises(RecGymError, match="optimizers"):
        restore_checkpoint(
            loaded, policy=make_policy(), reward_model=None, optimizers={},
            generators=parts["generators"],
        )  # fmt: skip
    with pytest.raises(RecGymError, match="reward model"):
        restore_checkpoint(
            loaded, policy=make_policy(), reward_model=make_reward("energy", None), **parts
        )
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(RecGymError, match="not a recgym.agents.checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- validation
def test_config_and_component_validation(tmp_path, synthetic):
    data, split = synthetic
    with pytest.raises(ValueError, match="AdversarialConfig.n_rounds"):
        AdversarialConfig(n_rounds=0)
    with pytest.raises(ValueError, match="negatives"):
        AdversarialConfig(negatives="random")
    with pytest.raises(ValueError, match="reward_form"):
        AdversarialConfig(reward_form="prob")
    with pytest.raises(ValueError, match="PGConfig.alpha"):
        AdversarialConfig(alpha=-1.0)
    assert AdversarialConfig(horizon=4, rollout_batch_size=8).pg_config.n_steps == 4
    with pytest.raises(TypeError, match="RewardModel"):
        AdversarialTrainer(make_policy(), object(), split, small_config(tmp_path))
    wrong = EnergyDiscriminator(EnergyConfig(dim=16), n_items=50, seed=0)
    with pytest.raises(ValueError, match="reward_model has n_items=50 but the data have 60"):
        AdversarialTrainer(make_policy(), wrong, split, small_config(tmp_path))
    assert math.isinf(AdversarialTrainer(
        make_policy(), make_reward("energy", split), split, small_config(tmp_path)
    ).best_metric)  # fmt: skip


# ----------------------------------------------------------------------------- generator modes
@pytest.mark.parametrize("weights", ["discriminator", "one", "batch_mean", "permuted"])
def test_weighted_mle_mode_moves_the_policy_by_discriminator_weighted_mle(
    tmp_path, synthetic, weights
):
    data, split = synthetic
    config = small_config(
        tmp_path, n_rounds=2, g_steps=5, log_dir=None, generator_update="weighted_mle",
        weighted_mle=WeightedMLEConfig(batch_size=32, weights=weights),
    )  # fmt: skip
    trainer = AdversarialTrainer(make_policy(), make_reward("multifactor", split), split, config)
    frame = trainer.train()
    assert trainer.pg.n_updates == 0  # no policy-gradient step in this mode
    assert {"gen/loss", "gen/weight_mean", "disc/heldout_auc", "policy/kl_from_start"} <= set(
        frame.columns
    )
    last = frame.iloc[-1]
    assert last["policy/rel_change"] > 0 and last["policy/kl_from_start"] > 0
    if weights == "one":
        assert last["gen/weight_mean"] == 1.0 and last["gen/weight_std"] == 0.0
    else:  # D(fake) in (0, 1); the batch mean has no spread
        assert 0 < last["gen/weight_mean"] < 1
        assert (last["gen/weight_std"] < 1e-6) == (weights == "batch_mean")


def test_health_is_measured_on_sequences_the_discriminator_never_trains_on(tmp_path, synthetic):
    data, split = synthetic
    trainer = AdversarialTrainer(
        make_policy(), make_reward("multifactor", split), split,
        small_config(tmp_path, n_rounds=1, n_heldout=40, log_dir=None),
    )  # fmt: skip
    held, pool = trainer.heldout, trainer.real_pool
    assert held.shape == (40, 20)
    assert not (held[:, None, :] == pool[None, :, :]).all(-1).any()  # none in the D pool
    frame = trainer.train()
    start = frame.iloc[0]
    assert start["policy/kl_from_start"] == pytest.approx(0.0, abs=1e-6)
    assert start["policy/rel_change"] == 0.0 and start["policy/heldout_entropy"] > 0
    assert 0 <= frame.iloc[1]["disc/heldout_auc"] <= 1
    assert frame.iloc[1]["policy/rel_change"] > 0
    assert math.isfinite(frame.iloc[1]["policy/grad_snr"])  # policy-gradient mode
    assert math.isnan(start.get("policy/grad_snr", math.nan))  # no rollout before round 1


def test_difference_shaping_rewards_each_step_with_the_increment_of_the_logit(tmp_path, synthetic):
    data, split = synthetic
    reward_model = make_reward("multifactor", split)
    config = small_config(tmp_path, reward_form="logit", reward_shaping="difference")
    trainer = AdversarialTrainer(make_policy(), reward_model, split, config)
    trainer.pg.step()
    rollout = trainer.pg.last_rollout
    with torch.no_grad(), evaluating(reward_model):
        after = reward_model(rollout.sequences().reshape(-1, 20)).view(3, 32)
        before = reward_model(rollout.histories.reshape(-1, 20)).view(3, 32)
    assert torch.allclose(rollout.rewards, after - before, atol=1e-5)
    # the increments telescope: the return of step 0 is F(final) - F(real prefix)
    assert torch.allclose(rollout.rewards.sum(0), after[-1] - before[0], atol=1e-4)


def test_measuring_health_changes_nothing_in_the_run(tmp_path, synthetic):
    data, split = synthetic
    runs = []
    for n_heldout in (0, 32):
        config = small_config(tmp_path / str(n_heldout), n_rounds=2, n_heldout=n_heldout,
                              log_dir=None)  # fmt: skip
        trainer = AdversarialTrainer(make_policy(), make_reward("multifactor", split), split,
                                     config)  # fmt: skip
        trainer.train()
        runs.append(trainer.policy.state_dict())
    for key, value in runs[0].items():
        assert torch.equal(value, runs[1][key]), key


def test_a_collapsed_discriminator_warns_and_can_stop_the_run(tmp_path, synthetic):
    data, split = synthetic
    config = small_config(tmp_path, n_rounds=3, log_dir=None, auc_chance=0.99, auc_saturated=1.0,
                          stop_on_collapse=True)  # fmt: skip
    trainer = AdversarialTrainer(make_policy(), make_reward("multifactor", split), split, config)
    with pytest.warns(RuntimeWarning, match=r"round 1: held-out discriminator AUC .* < 0.99"):
        frame = trainer.train()
    assert frame["round"].tolist() == [0, 1] and trainer.stop_reason.startswith("round 1")


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"generator_update": "ppo"}, ValueError, "AdversarialConfig.generator_update must be"),
        ({"weighted_mle": {"weights": "one"}}, TypeError, "must be a WeightedMLEConfig"),
        ({"auc_chance": 0.9, "auc_saturated": 0.8}, ValueError, "auc_chance < auc_saturated"),
        ({"d_steps": 0}, ValueError, "AdversarialConfig.d_steps must be an int >= 1"),
        ({"n_heldout": -1}, ValueError, "AdversarialConfig.n_heldout must be an int >= 0"),
        ({"n_fakes": 0}, ValueError, "AdversarialConfig.n_fakes must be an int >= 1"),
        ({"negatives": "top1"}, ValueError, "AdversarialConfig.negatives must be one of"),
        ({"reward_shaping": "delta"}, ValueError, "AdversarialConfig.reward_shaping must be"),
    ],
)
def test_bad_generator_and_health_settings_name_the_field(overrides, error, match):
    with pytest.raises(error, match=match):
        AdversarialConfig(**overrides)


def test_plot_training_health_draws_a_panel_per_metric(tmp_path, synthetic):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from agents.health_plot import PANELS, plot_training_health

    data, split = synthetic
    trainer = AdversarialTrainer(
        make_policy(), make_reward("multifactor", split), split,
        small_config(tmp_path, n_rounds=2, log_dir=None),
    )  # fmt: skip
    frame = trainer.train()
    fig = plot_training_health(frame, title="health")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [name for _, name in PANELS]  # every health metric is in the history
    fig.savefig(tmp_path / "health.png")
    assert (tmp_path / "health.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="none of the health columns"):
        plot_training_health(frame[["round"]])
    with pytest.raises(ValueError, match="'round' column"):
        plot_training_health(frame.drop(columns=["round"]))


def test_the_policy_gradient_settings_nest_as_one_pg_config(tmp_path, synthetic):
    pg = PGConfig(n_steps=3, batch_size=32, lr=1e-3, ppo_epochs=2, baseline="leave_one_out")
    sizes = dict(rollout_batch_size=32, horizon=3, max_len=20, d_batch_size=32, n_eval_users=32)
    config = AdversarialConfig(n_rounds=1, disc_lr=1e-3, pg=pg, **sizes)
    assert config.pg_config is pg
    data, split = synthetic
    trainer = AdversarialTrainer(make_policy(), make_reward("multifactor", split), split, config)
    frame = trainer.train()
    assert "policy/clip_fraction" in frame  # the PPO surrogate ran
    with pytest.raises(ValueError, match=r"pg.n_steps=3 must equal horizon=4"):
        AdversarialConfig(pg=pg, **(sizes | {"horizon": 4}))
    with pytest.raises(ValueError, match=r"policy gradient twice: pg= and \['entropy_coef'\]"):
        AdversarialConfig(pg=pg, entropy_coef=0.5, **sizes)
    with pytest.raises(TypeError, match="AdversarialConfig.pg must be a PGConfig"):
        AdversarialConfig(pg={"lr": 1.0}, **sizes)


def test_greedy_topk_negatives_replace_the_last_item_by_the_top_k_unseen_items(synthetic):
    data, split = synthetic
    policy = make_policy()
    real = real_sequences(split, 20, min_len=2)[:16]
    fakes = GreedyTopKNegatives(policy, 5, exclude_seen=True).sample(real)
    assert fakes.shape == (16 * 5, 20)
    assert torch.equal(fakes[:, :-1], real[:, :-1].repeat_interleave(5, 0))  # same prefix
    last = fakes[:, -1].reshape(16, 5)
    assert (last != real[:, -1:]).all()  # never the real item
    assert not (last.unsqueeze(2) == real[:, :-1].unsqueeze(1)).any()  # never a seen item
    assert all(len(set(row.tolist())) == 5 for row in last)
    with torch.no_grad():
        scores = policy.eval()(real[:, :-1]).gather(1, last)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # the top items, best first


# ----------------------------------------------------------------------------- pluggable parts
def _plugged(tmp_path, split, n_rounds=2, policy_seed=0, **kwargs):
    """A trainer whose weighted-MLE generator (and env) are built by the caller."""
    policy, reward_model = make_policy(seed=policy_seed), make_reward("multifactor", split)
    wmle = WeightedMLEConfig(batch_size=32, weights="permuted")
    gen_algo = WeightedMLEGenerator(policy, reward_model, split, wmle, max_len=20)
    config = small_config(tmp_path, n_rounds=n_rounds, g_steps=2, d_steps=2, log_dir=None)
    return AdversarialTrainer(policy, reward_model, split, config, gen_algo=gen_algo, **kwargs)


def test_a_plugged_generator_algorithm_runs_as_the_built_in_one_and_resumes(tmp_path, synthetic):
    data, split = synthetic
    built_in = _run(tmp_path / "a", split, n_rounds=2, **MODES["weighted_mle"])
    plugged = _plugged(tmp_path / "b", split)
    assert plugged.gen_algo is not plugged.pg and plugged.wmle is None
    plugged.train()
    for (name, x), (_, y) in zip(built_in.policy.state_dict().items(),
                                 plugged.policy.state_dict().items(), strict=True):  # fmt: skip
        assert torch.equal(x, y), name
    # an exact resume: the plugged generator's state_dict travels in the checkpoint
    checkpoint = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert checkpoint["extra"]["gen_algo"]["position"] == plugged.gen_algo.position
    longer = _plugged(tmp_path / "c", split, n_rounds=3)
    longer.train()
    resumed = _plugged(tmp_path / "b", split, n_rounds=3, policy_seed=5)
    resumed.load(tmp_path / "b" / "checkpoints" / "last.pt")
    resumed.train()
    for (name, x), (_, y) in zip(longer.policy.state_dict().items(),
                                 resumed.policy.state_dict().items(), strict=True):  # fmt: skip
        assert torch.equal(x, y), name


def test_a_user_env_rewards_the_built_in_policy_gradient(tmp_path, synthetic):
    data, split = synthetic
    reward_model = make_reward("multifactor", split)
    env = BatchedRecEnv(split, RewardFormWrapper(reward_model, "logit"),
                        EnvConfig(max_len=20, horizon=3, start="random"), batch_size=32,
                        seed=0)  # fmt: skip
    trainer = AdversarialTrainer(make_policy(), reward_model, split, small_config(tmp_path),
                                 env=env)  # fmt: skip
    assert trainer.pg.env is env
    trainer.pg.step()
    logits = reward_model.reward(trainer.pg.last_rollout.sequences().reshape(-1, 20))
    assert not torch.allclose(trainer.pg.last_rollout.rewards.flatten(), logits)  # not D itself
    with torch.no_grad(), evaluating(reward_model):
        expected = reward_model(trainer.pg.last_rollout.sequences().reshape(-1, 20))
    assert torch.allclose(trainer.pg.last_rollout.rewards.flatten(), expected, atol=1e-5)


def test_bad_plugged_parts_are_refused_with_the_reason(tmp_path, synthetic):
    data, split = synthetic
    policy, reward_model = make_policy(), make_reward("multifactor", split)
    config = small_config(tmp_path)
    with pytest.raises(TypeError, match="gen_algo must have policy, step"):
        AdversarialTrainer(policy, reward_model, split, config, gen_algo=object())
    other = WeightedMLEGenerator(make_policy(seed=1), reward_model, split, max_len=20)
    with pytest.raises(ValueError, match="the trainer's own policy"):
        AdversarialTrainer(policy, reward_model, split, config, gen_algo=other)
    mine = WeightedMLEGenerator(policy, reward_model, split, max_len=20)
    wmle_config = small_config(tmp_path, generator_update="weighted_mle")
    with pytest.raises(ValueError, match="gen_algo replaces the config's generator_update"):
        AdversarialTrainer(policy, reward_model, split, wmle_config, gen_algo=mine)
    env_config = EnvConfig(max_len=20, horizon=3, start="random")
    hit_env = BatchedRecEnv(split, HitReward(), env_config, batch_size=32, seed=0)
    with pytest.raises(ValueError, match="not with the trainer's reward model"):
        AdversarialTrainer(policy, reward_model, split, config, env=hit_env)
    own_env = BatchedRecEnv(split, reward_model, env_config, batch_size=32, seed=0)
    with pytest.raises(ValueError, match="brings its own reward"):
        AdversarialTrainer(policy, reward_model, split,
                           small_config(tmp_path, reward_form="logit"), env=own_env)  # fmt: skip
    with pytest.raises(TypeError, match="env must be a recgym BatchedRecEnv"):
        AdversarialTrainer(policy, reward_model, split, config, env="env")
