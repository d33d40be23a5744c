"""agents.experiments.cli and .config_files: train / evaluate / rollout, config files, errors."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import pandas as pd
import pytest
import torch

from agents.experiments import cli, runs
from agents.experiments.config_files import (
    QUICK_DEFAULTS,
    build_config,
    load_config_file,
    resolve_settings,
)
from recgym.errors import RecGymError

TINY = """
seed = 1

[synthetic]
n_users = 120
n_items = 40
n_genres = 4
min_seq_len = 6
max_seq_len = 15

[sasrec]
dim = 8
n_blocks = 1
max_len = 10

[mle]
epochs = 1
batch_size = 64

[multifactor]
dim = 8
max_len = 10

[energy]
dim = 8

[adversarial]
horizon = 2
rollout_batch_size = 16
d_batch_size = 32
n_eval_users = 16

[reinforce]
batch_size = 16
n_steps = 2
"""


@pytest.fixture(scope="module")
def tiny_toml(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(TINY)
    return path


def train(config, out, *extra):
    return cli.main(["train", *extra, "--config", str(config), "--out", str(out)])


@pytest.fixture(scope="module")
def mle_run(tiny_toml, tmp_path_factory):
    out = tmp_path_factory.mktemp("mle")
    assert train(tiny_toml, out, "mle") == 0
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def mfgan_run(tiny_toml, tmp_path_factory):
    out = tmp_path_factory.mktemp("mfgan")
    assert train(tiny_toml, out, "mfgan", "--rounds", "1") == 0
    return out / "checkpoint.pt"


# ---------------------------------------------------------------------- train / evaluate / rollout
def test_train_mle_writes_a_weights_only_checkpoint(mle_run, capsys):
    payload = torch.load(mle_run, weights_only=True)
    assert payload["format"] == runs.CHECKPOINT_FORMAT and payload["algo"] == "mle"
    assert payload["reward_model"] is None
    assert payload["configs"]["mle"]["epochs"] == 1 and payload["configs"]["train"]["seed"] == 1
    assert payload["data"]["synthetic"]["n_users"] == 120
    assert {"full/HR@10", "full/NDCG@10", "uniform-100/MRR"} <= set(payload["metrics"])
    assert (mle_run.parent / "metrics.csv").is_file()
    assert (mle_run.parent / "history_mle.csv").is_file()


def test_evaluate_reproduces_the_training_metrics(mle_run, capsys):
    payload = torch.load(mle_run, weights_only=True)
    capsys.readouterr()
    assert cli.main(["evaluate", str(mle_run), "--protocols", "full", "--ks", "10"]) == 0
    out = capsys.readouterr().out
    assert "NDCG@10" in out and "SASRec (mle)" in out
    assert f"{payload['metrics']['full/NDCG@10']:.4f}" in out


def test_rollout_prints_items_and_oracle_rewards(mle_run, capsys):
    capsys.readouterr()
    assert cli.main(["rollout", str(mle_run), "--user", "2", "--steps", "4", "--greedy"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "oracle" in lines[1]  # no reward model: the true user's log-likelihood
    header = lines[2].split()
    assert header[:3] == ["step", "item", "raw"] and "reward" in header
    assert len(lines) == 3 + 4


def test_rollout_shows_per_factor_rewards_of_a_multifactor_checkpoint(mfgan_run, capsys):
    payload = torch.load(mfgan_run, weights_only=True)
    assert payload["reward_model"]["class"] == "multifactor"
    capsys.readouterr()
    assert cli.main(["rollout", str(mfgan_run), "--user", "0", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "MultiFactorDiscriminator" in out
    assert "factor/item_id" in out and "factor/genre" in out


@pytest.mark.parametrize("algo", ["sao", "reinforce", "ebseqgan"])
def test_train_other_algorithms(algo, tiny_toml, tmp_path, capsys):
    assert train(tiny_toml, tmp_path, algo, "--rounds", "1") == 0
    assert f"SASRec {algo.upper()}" in capsys.readouterr().out
    assert cli.main(["evaluate", str(tmp_path / "checkpoint.pt"), "--ks", "10"]) == 0


def test_command_errors_exit_2_with_a_message(mle_run, tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    torch.save({"format": "other"}, tmp_path / "other.pt")
    assert cli.main(["rollout", str(tmp_path / "other.pt"), "--user", "0"]) == 2
    assert "not a `recgym train` checkpoint" in capsys.readouterr().err
    assert cli.main(["rollout", str(mle_run), "--user", "100000"]) == 2
    assert "--user must be a user index" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[mle]\nepochz = 3\n")
    assert cli.main(["train", "mle", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['epochz']" in err and "'epochs'" in err


def test_rebuild_refuses_classes_outside_the_allow_list():
    entry = {"class": "os.system", "config": {}, "init_kwargs": {}, "state_dict": {}}
    with pytest.raises(RecGymError, match="expected one of"):
        cli.rebuild_policy(entry, device=torch.device("cpu"))


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], "demo"),
        (["--seed", "1"], "demo"),
        (["data"], "data"),
        (["reference", "random", "--data", "x"], "reference"),
        (["evaluate", "--data", "x", "random"], "reference"),  # the former spelling
        (["evaluate", "random.pt"], "evaluate"),
        (["evaluate", "./random"], "evaluate"),
    ],
)
def test_the_subcommand_alone_decides_what_runs(argv, command, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "random").write_text("a file named like a reference model changes nothing")
    calls = []
    for name in ("demo", "data", "reference"):
        monkeypatch.setitem(cli.RECGYM_HANDLERS, name, lambda a, n=name: calls.append((n, a)))
    monkeypatch.setattr(cli, "run_evaluate", lambda a: calls.append(("evaluate", a)))
    assert cli.main(argv) == 0
    assert [name for name, _ in calls] == [command]
    if argv[:1] == ["--seed"]:
        assert calls[0][1].seed == 1


def test_help_lists_the_training_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "train" in out and "rollout" in out and "recgym demo" in out


# ---------------------------------------------------------------------- config files
@dataclass(frozen=True, kw_only=True)
class Toy:
    a: int = 1
    names: tuple[str, ...] = ("x",)
    rate: float | None = None


def test_build_config_precedence_and_list_to_tuple():
    config = build_config(Toy, {"a": 2, "names": ["p", "q"]}, {"a": None, "rate": 0.5})
    assert config == Toy(a=2, names=("p", "q"), rate=0.5)
    assert build_config(Toy, {"a": 2}, {"a": 3}).a == 3
    assert build_config(Toy, None) == Toy()


def test_build_config_unknown_keys_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['b'\] in config section \[toy\]"):
        build_config(Toy, {"b": 1}, section="toy")
    with pytest.raises(ValueError, match=r"valid keys: \['a', 'names', 'rate'\]"):
        build_config(Toy, {}, {"c": 1})
    with pytest.raises(ValueError, match="must be a table"):
        build_config(Toy, [1, 2], section="toy")


def test_load_config_file_toml_and_yaml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("seed = 3\n[mle]\nepochs = 2\nlr = 1e-2\n")
    assert load_config_file(toml) == {"seed": 3, "mle": {"epochs": 2, "lr": 0.01}}
    pytest.importorskip("yaml")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("seed: 3\nmle:\n  epochs: 2\n")
    assert load_config_file(yaml_file) == {"seed": 3, "mle": {"epochs": 2}}


def test_load_config_file_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config_file(tmp_path / "none.toml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match="must end in one of"):
        load_config_file(tmp_path / "c.json")
    (tmp_path / "broken.toml").write_text("[mle\n")
    with pytest.raises(ValueError, match="cannot parse TOML"):
        load_config_file(tmp_path / "broken.toml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML "not installed"
    with pytest.raises(ImportError, match="PyYAML is not installed"):
        load_config_file(tmp_path / "list.yaml")


def test_resolve_settings_precedence():
    file = {"seed": 4, "sasrec": {"dim": 24, "max_len": 12}, "mle": {"epochs": 9, "lr": 0.01}}
    settings = resolve_settings(file, {"epochs": 2, "algo": "mfgan", "dim": 16})
    mle, sasrec = settings.configs["mle"], settings.configs["sasrec"]
    assert (mle.epochs, mle.lr, mle.seed) == (2, 0.01, 4)  # flag > file > quick default
    assert mle.batch_size == 128 and mle.patience == QUICK_DEFAULTS["mle"]["patience"]
    assert (sasrec.dim, sasrec.max_len) == (16, 12)
    assert settings.configs["adversarial"].max_len == 12  # follows the policy's window
    assert settings.configs["adversarial"].seed == 4
    assert str(settings.out_dir) == "runs/mfgan"
    rounds = resolve_settings({}, {"rounds": 3}).configs["adversarial"].n_rounds
    assert rounds == 3


def test_resolve_settings_errors():
    with pytest.raises(ValueError, match=r"unknown top-level key\(s\) \['sasrek'\]"):
        resolve_settings({"sasrek": {}}, {})
    with pytest.raises(ValueError, match="algo must be one of"):
        resolve_settings({"algo": "gan"}, {})
    with pytest.raises(ValueError, match=r"\[mle\] in 'f.toml' must be a table"):
        resolve_settings({"mle": 3}, {}, source="f.toml")
    with pytest.raises(ValueError, match="SASRecConfig.dim must be an int >= 1"):
        resolve_settings({}, {"dim": 0})


@pytest.mark.realdata
def test_train_mle_on_movielens_then_evaluate(tmp_path, capsys):
    from conftest import require_data

    data_dir = require_data("movielens-100k/u.data")
    config = tmp_path / "ml.toml"
    config.write_text("[sasrec]\ndim = 8\nn_blocks = 1\nmax_len = 20\n[mle]\nepochs = 1\n")
    argv = ["--data", "ml-100k", "--data-dir", str(data_dir), "--config", str(config)]
    assert cli.main(["train", "mle", *argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "all 943 users" in out
    assert "oracle" not in out.lower()  # real data: no true user model
    checkpoint = str(tmp_path / "checkpoint.pt")
    assert cli.main(["evaluate", checkpoint, "--data-dir", str(data_dir), "--ks", "10"]) == 0
    assert "ml-100k" in capsys.readouterr().out.lower()


def test_train_progress_bars_on_request(tiny_toml, tmp_path, capsys):
    assert train(tiny_toml, tmp_path / "run", "mfgan", "--epochs", "2", "--rounds", "1",
                 "--progress") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "mle" in err and "2/2" in err and "val_ndcg10=" in err and "adversarial" in err
    assert train(tiny_toml, tmp_path / "quiet", "mle", "--epochs", "2", "--no-progress") == 0
    assert "val_ndcg10=" not in capsys.readouterr().err


def test_train_mfgan_with_the_official_generator_step_from_a_nested_section(tmp_path):
    without = re.sub(r"\[adversarial\]\n(?:[^\[\n][^\n]*\n)*", "", TINY)
    assert "[adversarial]" not in without
    config = tmp_path / "wmle.toml"
    config.write_text(without + (
        '\n[adversarial]\ngenerator_update = "weighted_mle"\nhorizon = 2\n'
        "rollout_batch_size = 16\nd_batch_size = 32\nn_eval_users = 16\n"
        '\n[adversarial.weighted_mle]\nweights = "permuted"\nbatch_size = 32\n'
    ))  # fmt: skip
    assert train(config, tmp_path / "run", "mfgan", "--rounds", "1") == 0
    history = pd.read_csv(tmp_path / "run" / "history_mfgan.csv")
    assert {"gen/loss", "gen/weight_mean", "disc/heldout_auc"} <= set(history.columns)
    assert "policy/pg_loss" not in history  # no policy-gradient step in this mode
