"""Data-parallel training on 2 gloo ranks (CPU), started with torch.multiprocessing.spawn.

One spawn runs most scenarios in one process group (see tests/distributed_workers.py); the
killed-and-resumed run needs two more. Each rank records its results or the error it raised.
"""

from __future__ import annotations

import time

import distributed_workers as w
import pytest
import torch
import torch.multiprocessing as mp

from agents import distributed
from agents.checkpoint import load_checkpoint
from agents.mle import sequence_loss
from agents.sasrec import SASRecPolicy
from agents.sequences import training_windows
from recgym import evaluate
from recgym._torch_io import read_weights_only
from recgym.metrics import metrics_from_ranks

MAIN = ["grads", "sharded_eval", "mle", "mle_bce", "mismatched_config", "too_few_users",
        "unknown_backend", "adversarial"]  # fmt: skip


def spawn(scenarios: list[str], out, world: int = 2) -> list[dict]:
    mp.spawn(w.worker, args=(world, w.free_port(), scenarios, str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    tic = time.perf_counter()
    results = spawn(MAIN, out)
    return out, results, time.perf_counter() - tic


def ok(result: dict) -> dict:
    assert "error" not in result, result.get("trace")
    return result


def test_two_ranks_with_half_the_batch_give_the_single_process_gradient(runs):
    _, results, _ = runs
    _, split = w.tiny_data()
    policy = w.tiny_policy(split.dataset.n_items)
    inputs, targets = (t[:16] for t in training_windows(split, 10))
    sequence_loss(policy, inputs, targets, loss="ce").backward()
    for result in results:
        for name, param in policy.named_parameters():
            torch.testing.assert_close(ok(result["grads"])[name], param.grad, atol=1e-6, rtol=1e-5)


def test_sharded_evaluation_equals_one_process_to_the_digit(runs):
    _, results, _ = runs
    _, split = w.tiny_data()
    policy = w.tiny_policy(split.dataset.n_items)
    ranks = distributed.sharded_full_ranks(policy, split, "test", max_len=10, batch_size=7)
    frame = evaluate(policy, split, "valid", protocols=("full",), ks=(10,), max_len=10,
                     batch_size=7)  # fmt: skip
    single = frame.set_index(["metric", "k"])["value"]
    for result in results:
        assert torch.equal(ok(result["sharded_eval"])["ranks"], ranks)
        metrics = result["sharded_eval"]["metrics"]
        assert metrics["eval/NDCG@10"] == single[("NDCG", 10)]  # exact, not approximate
        assert metrics["eval/HR@10"] == single[("HR", 10)]
    full = evaluate(policy, split, "test", protocols=("full",), ks=(10,), max_len=10)
    assert (
        metrics_from_ranks(ranks, (10,))["NDCG@10"]
        == full["value"][full["metric"] == "NDCG"].item()
    )


def test_two_rank_mle_finishes_in_sync_and_writes_one_loadable_checkpoint(runs):
    out, results, _ = runs
    first, second = (ok(r["mle"]) for r in results)
    assert list(first["history"]["epoch"]) == [1, 2, 3]
    assert first["history"].equals(second["history"])  # losses and metrics all-reduced
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name])
    assert sorted(p.name for p in (out / "mle").iterdir()) == ["best.pt", "state.pt"]
    policy = SASRecPolicy.load(out / "mle" / "best.pt")  # in this single process
    state = read_weights_only(out / "mle" / "state.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert not any(k.startswith("module.") for k in state["policy"])
    policy.load_state_dict(state["policy"])
    assert ok(results[0]["mle_bce"])["history"]["mle/loss"].notna().all()


def test_a_killed_two_rank_run_resumes_to_the_uninterrupted_weights(runs):
    out, results, _ = runs
    with pytest.raises(mp.ProcessExitedException):
        spawn(["mle_killed"], out)
    state = read_weights_only(out / "resumed" / "state.pt")
    assert [row["epoch"] for row in state["rows"]] == [1, 2] and not state["done"]
    resumed = spawn(["mle_resumed"], out)
    for result in resumed:
        weights = ok(result["mle_resumed"])["weights"]
        for name, value in ok(results[0]["mle"])["weights"].items():
            assert torch.equal(weights[name], value), name


def test_a_two_rank_adversarial_round_stays_in_sync_on_disjoint_users(runs):
    out, results, _ = runs
    first, second = (ok(r["adversarial"]) for r in results)
    assert list(first["history"]["round"]) == [0, 1]  # evaluate_start: round 0 too
    assert first["history"]["eval/NDCG@10"].notna().all()
    for key in ("policy", "reward"):  # each model's DDP kept the ranks' weights equal
        for name, value in first[key].items():
            assert torch.equal(value, second[key][name]), (key, name)
    assert not set(first["users"].tolist()) & set(second["users"].tolist())
    assert sorted(p.name for p in (out / "adversarial").iterdir()) == ["best.pt", "last.pt"]
    checkpoint = load_checkpoint(out / "adversarial" / "last.pt")
    assert len(checkpoint["extra"]["ranks"]) == 2
    policy = w.tiny_policy(30)
    policy.load_state_dict(checkpoint["policy"]["state_dict"])  # loads in one process


@pytest.mark.parametrize(
    ("scenario", "match"),
    [
        ("mismatched_config", "MLEConfig differs across ranks"),
        ("too_few_users", "world size 2 is larger than the number of users"),
        ("unknown_backend", "unknown torch.distributed backend 'mpi'"),
    ],
)
def test_bad_inputs_raise_on_every_rank_without_hanging(runs, scenario, match):
    _, results, seconds = runs
    for result in results:
        assert "error" in result[scenario] and match in result[scenario]["error"]
    assert seconds < 60


def test_helpers_in_one_process():
    assert distributed.get_world_size() == 1 and distributed.is_main_process()
    assert not distributed.is_distributed()
    assert distributed.backend_for("cpu") == "gloo"
    with pytest.raises(ValueError, match=r"expected one of \('gloo', 'nccl'\)"):
        distributed.backend_for("cpu", "mpi")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        distributed.backend_for("cpu", "nccl")
    with pytest.raises(ValueError, match="timeout_s"):
        distributed.init_distributed("cpu", timeout_s=0)
    assert distributed.unwrap_state_dict({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}
    users = torch.arange(10)
    shards = [distributed.shard_users(users, seed=3, rank=r, world_size=3) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    again = distributed.shard_users(users, seed=3, rank=1, world_size=3)
    assert torch.equal(again, shards[1])
    with pytest.raises(ValueError, match="world size 11 is larger than the number of users"):
        distributed.shard_users(users, seed=0, rank=0, world_size=11)
    assert distributed.config_hash(w.mle_config()) != distributed.config_hash(w.mle_config(lr=1))


def test_nproc_reruns_the_command_under_torchrun(tmp_path):
    import subprocess
    import sys

    from agents.experiments.launch import torchrun_argv

    argv = torchrun_argv(["train", "mle", "--nproc", "2", "--epochs=1", "--nproc=3"], 2)
    assert argv[1:] == ["-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                        "agents.experiments.cli", "train", "mle", "--epochs=1"]  # fmt: skip
    with pytest.raises(ValueError, match="--nproc must be an int >= 1"):
        torchrun_argv([], 0)
    config = tmp_path / "tiny.toml"
    config.write_text("seed = 1\n[synthetic]\nn_users = 60\nn_items = 30\nmin_seq_len = 5\n"
                      "max_seq_len = 10\n[sasrec]\ndim = 8\nn_blocks = 1\nmax_len = 8\n"
                      "[mle]\nepochs = 1\nbatch_size = 32\n")  # fmt: skip
    out = tmp_path / "run"
    command = [sys.executable, "-m", "agents.experiments.cli", "train", "mle", "--nproc", "2",
               "--config", str(config), "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 ranks (gloo)" in done.stdout and done.stdout.count("== test metrics") == 1
    assert (out / "checkpoint.pt").exists()
