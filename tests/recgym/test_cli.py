"""The ``recgym`` command line, run in-process with tiny settings."""

from __future__ import annotations

import pytest

from recgym.cli import main


def test_demo_runs_on_small_synthetic_data(capsys):
    assert main(["--users", "120", "--items", "60", "--num-envs", "32", "--horizon", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("synthetic dataset", "true user model (oracle)", "popularity", "hit reward"):
        assert text in out


def test_data_command_on_synthetic(capsys):
    assert main(["data", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "leave-one-out segments" in out and "popularity" in out


def test_evaluate_command_reports_tidy_metrics(capsys):
    assert main(["evaluate", "popularity", "--protocols", "full", "--ks", "10"]) == 0
    out = capsys.readouterr().out
    assert "NDCG" in out and "full" in out


def test_errors_are_reported_not_raised(capsys):
    assert main(["data", "no-such-dataset"]) == 2
    assert "recgym: error" in capsys.readouterr().err


def test_help_exits_cleanly():
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
