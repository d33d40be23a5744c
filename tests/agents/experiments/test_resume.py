"""`recgym train` survives `kill -9` in every phase: rerun, it resumes and ends bit-identical."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from agents.experiments import cli

from .test_cli import TINY

# Runs `recgym train` in a child process that SIGKILLs itself when `target` is called for the
# `at`-th time, i.e. after that many epochs / updates / rounds have been saved.
KILLER = textwrap.dedent(
    """
    import importlib, os, signal, sys
    import torch
    module, attr, at, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)  # the parent's: float sums must add up in the same order
    owner_name, _, method = attr.rpartition(".")
    owner = getattr(importlib.import_module(module), owner_name) if owner_name else None
    original = getattr(owner, method)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, method, wrapped)
    from agents.experiments import cli
    sys.exit(cli.main(sys.argv[5:]))
    """
)

PHASES = {
    # algo: (module, attribute whose N-th call is killed, N, extra flags)
    "mle": ("agents.mle", "MLETrainer._epoch", 3, ["--epochs", "4"]),
    "sao": ("agents.mle", "MLETrainer._epoch", 6, ["--epochs", "3", "--rounds", "4"]),
    "reinforce": ("agents.reinforce", "PolicyGradientTrainer.step", 3, ["--rounds", "4"]),
    "mfgan": ("agents.adversarial", "AdversarialTrainer._g_steps", 3, ["--rounds", "4"]),
}


def weights(path):
    return torch.load(path, weights_only=True)["policy"]["state_dict"]


@pytest.mark.parametrize("algo", list(PHASES))
def test_a_killed_run_resumes_to_the_uninterrupted_weights(algo, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.replace("epochs = 1", "epochs = 4\neval_every = 1\npatience = 10"))
    module, target, at, extra = PHASES[algo]
    argv = ["train", algo, *extra, "--config", str(config)]
    assert cli.main([*argv, "--out", str(tmp_path / "straight")]) == 0
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, module, target, str(at), str(torch.get_num_threads()),
         *argv, "--out", str(tmp_path / "killed")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()
    assert cli.main([*argv, "--out", str(tmp_path / "killed")]) == 0  # resumes
    a, b = weights(tmp_path / "straight" / "checkpoint.pt"), weights(tmp_path / "killed" /
                                                                     "checkpoint.pt")  # fmt: skip
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_finished_run_is_never_overwritten_without_asking(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    argv = ["train", "mle", "--config", str(config), "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 0
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    assert cli.main(argv) == 2
    assert "holds a finished run (checkpoint.pt); pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert cli.main([*argv, "--overwrite", "--seed", "2"]) == 0
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() != before
