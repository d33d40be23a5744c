"""agents.sb3_policy: an SB3 actor started from a recgym policy, read back as a recgym policy."""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import PPO

from agents.actions import next_log_probs
from agents.adversarial_steps import PolicyNegatives
from agents.quality import cascading_error
from agents.sasrec import SASRecConfig, SASRecPolicy
from agents.sb3 import PolicyFeaturesExtractor, RewardModelCallback
from agents.sb3_policy import SB3ActorPolicy, start_actor_from
from recgym import BatchedRecEnv, EnvConfig, evaluate
from recgym.errors import RecGymError
from recgym.sb3 import SB3VecEnv
from rewards import (
    DifferenceReward,
    MultiFactorConfig,
    MultiFactorDiscriminator,
    RewardFormWrapper,
    real_sequences,
)

ENV = EnvConfig(max_len=20, horizon=3, start="random")


def encoder_and_model(split, reward_fn, *, pi=(), ortho_init=False, batch_size=16):
    encoder = SASRecPolicy(SASRecConfig(max_len=20, dim=16, n_blocks=1), n_items=60, seed=0)
    venv = SB3VecEnv(BatchedRecEnv(split, reward_fn, ENV, batch_size=batch_size, seed=0))
    model = PPO(
        "MlpPolicy", venv, n_steps=3, batch_size=48, n_epochs=1, seed=0, device="cpu",
        policy_kwargs={
            "features_extractor_class": PolicyFeaturesExtractor,
            "features_extractor_kwargs": {"policy": encoder},
            "net_arch": {"pi": list(pi), "vf": [16]}, "ortho_init": ortho_init,
        },
    )  # fmt: skip
    return encoder, model


def disc(split):
    return MultiFactorDiscriminator(MultiFactorConfig(dim=16, max_len=20), split.factors(), seed=0)


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_the_started_actor_is_its_encoders_policy(synthetic, exclude_seen):
    data, split = synthetic
    encoder, model = encoder_and_model(split, disc(split))
    start_actor_from(model.policy)
    actor = SB3ActorPolicy(model.policy).eval()
    encoder.eval()
    history = real_sequences(split, 20)[:64]
    for width in (20, 7):  # a shorter window is left-padded to the observation width
        ours = next_log_probs(actor, history[:, -width:], exclude_seen=exclude_seen)
        theirs = next_log_probs(encoder, history[:, -width:], exclude_seen=exclude_seen)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    # the recommender protocol too: the same ranking metrics as the encoder
    a = evaluate(actor, split, "valid", protocols=("full",), ks=(10,), max_len=20, seed=0)
    b = evaluate(encoder, split, "valid", protocols=("full",), ks=(10,), max_len=20, seed=0)
    assert a["value"].tolist() == pytest.approx(b["value"].tolist(), abs=1e-9)


def test_gail_style_fine_tuning_through_sb3_moves_the_actor_and_the_reward(synthetic):
    data, split = synthetic
    reward_model = disc(split)
    reward = DifferenceReward(RewardFormWrapper(reward_model, "logit"))
    encoder, model = encoder_and_model(split, reward)
    start_actor_from(model.policy)
    actor = SB3ActorPolicy(model.policy)
    reward_before = {k: v.clone() for k, v in reward_model.state_dict().items()}
    history = real_sequences(split, 20)[:32]
    with torch.no_grad():
        before = next_log_probs(actor.eval(), history, exclude_seen=True)
    callback = RewardModelCallback(reward_model, real_sampler=real_sequences(split, 20),
                                   batch_size=32, seed=0)  # fmt: skip
    model.learn(16 * 3 * 4, callback=callback)
    assert callback.n_rounds == 4
    assert any(not torch.equal(v, reward_before[k]) for k, v in reward_model.state_dict().items())
    with torch.no_grad():
        after = next_log_probs(actor.eval(), history, exclude_seen=True)
    assert not torch.allclose(before, after)
    # and the quality metrics read the SB3 actor like any recgym policy
    curve = cascading_error(actor, data.user_model, split, max_steps=3, n_users=16, max_len=20,
                            seed=0, exclude_seen=True)  # fmt: skip
    assert len(curve) == 3 and (curve["reverse_kl"] >= 0).all()
    fakes = PolicyNegatives(actor, 2, exclude_seen=True).sample(
        history, torch.Generator().manual_seed(0)
    )
    assert torch.equal(fakes[:, :-2], history[:, :-2])


def test_bad_sb3_policies_are_refused_with_the_reason(synthetic):
    data, split = synthetic
    _, deep = encoder_and_model(split, disc(split), pi=(16,))
    with pytest.raises(ValueError, match=r"net_arch=dict\(pi=\[\]"):
        start_actor_from(deep.policy)
    venv = SB3VecEnv(BatchedRecEnv(split, disc(split), ENV, batch_size=4, seed=0))
    flat = PPO("MlpPolicy", venv, n_steps=3, batch_size=12, device="cpu", seed=0)
    with pytest.raises(TypeError, match="PolicyFeaturesExtractor"):
        SB3ActorPolicy(flat.policy)
    _, model = encoder_and_model(split, disc(split))
    actor = SB3ActorPolicy(model.policy)
    with pytest.raises(RecGymError, match="newest position"):
        actor.all_logits(torch.ones(2, 20, dtype=torch.int64))
    with pytest.raises(ValueError, match="max_len=20"):
        actor(torch.ones(2, 21, dtype=torch.int64))
