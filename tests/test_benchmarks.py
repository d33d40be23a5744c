"""Smoke tests of the benchmark scripts (their real runs are measured, not tested)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_quick_writes_and_resumes(tmp_path, capsys):
    reproduce = load_script("reproduce")
    argv = ["--quick", "--models", "popularity", "sasrec", "apr", "--out-dir", str(tmp_path)]
    assert reproduce.main(argv) == 0
    out, err = capsys.readouterr()
    assert f"results: {tmp_path / 'results.csv'}" in out and "[2/3] synthetic sasrec" in out
    assert "mle" in err and "val_ndcg10=" in err  # the fit's bar: epochs, validation, ETA
    results = pd.read_csv(tmp_path / "results.csv")
    assert results["model"].tolist() == ["popularity", "sasrec", "apr"]
    assert {"full/NDCG@10", "uniform-100/HR@10", "popularity-100/MRR", "fit_s"} <= set(results)
    assert results.filter(like="robust/adv_drop").iloc[2].notna().all()  # APR's analysis
    assert "| sasrec | 1 |" in (tmp_path / "summary.md").read_text()
    assert reproduce.main(argv) == 0  # finished cells are skipped, not appended again
    assert len(pd.read_csv(tmp_path / "results.csv")) == 3
    with pytest.raises(ValueError, match=r"\['ce'\], not 'bce'; .* another --out-dir"):
        reproduce.main([*argv, "--mle-loss", "bce"])  # one table, one training objective


def test_reproduce_quick_pairs_mfgan_wmle_with_its_permuted_control(tmp_path):
    reproduce = load_script("reproduce")
    argv = ["--quick", "--models", "mfgan-wmle", "mfgan-wmle-permuted", "--out-dir", str(tmp_path),
            "--no-progress"]  # fmt: skip
    assert reproduce.main(argv) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert results["model"].tolist() == ["mfgan-wmle", "mfgan-wmle-permuted"]
    assert (results["mle_loss"] == "ce").all()  # both are MLE-based rows
    start = results["info/valid_ndcg10_start"]
    assert start.iloc[0] == start.iloc[1]  # one cached SASRec start for both
    diff = results["full/NDCG@10"].iloc[0] - results["full/NDCG@10"].iloc[1]
    assert (
        f"| mfgan-wmle − mfgan-wmle-permuted | 1 | {diff:+.4f} |"
        in (tmp_path / "summary.md").read_text()
    )


def test_monitor_test_reports_what_choosing_on_test_would_claim(tmp_path, capsys):
    reproduce, verdicts = load_script("reproduce"), load_script("paper_verdicts")
    argv = ["--quick", "--models", "sasrec", "mfgan", "--out-dir", str(tmp_path), "--no-progress",
            "--monitor-test"]  # fmt: skip
    assert reproduce.main(argv) == 0
    results = pd.read_csv(tmp_path / "results.csv")
    best = results["info/test_ndcg10_best_of_evals"]
    assert (best >= results["full/NDCG@10"] - 1e-9).all()  # selected weights were ranked too
    table = verdicts.inflation(results)
    assert table["model"].tolist() == ["sasrec", "mfgan"]
    expected = (best - results["full/NDCG@10"]).tolist()
    assert table["inflation"].tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="--monitor-test"):
        verdicts.inflation(results.drop(columns="info/test_ndcg10_best_of_evals"))


def test_reproduce_keeps_rows_another_process_appended(tmp_path, monkeypatch):
    """Two runs may share one --out-dir (e.g. another model of the same table): no lost rows."""
    reproduce = load_script("reproduce")
    run_cell = reproduce.run_cell

    def meanwhile(zoo, name, model, seed, device, ks=(10,)):
        row = run_cell(zoo, name, model, seed, device, ks)
        other = pd.DataFrame([row | {"model": "bpr-mf"}])  # finished by another process
        path = tmp_path / "results.csv"
        old = pd.read_csv(path) if path.exists() else pd.DataFrame()
        pd.concat([old, other], ignore_index=True).to_csv(path, index=False)
        return row

    monkeypatch.setattr(reproduce, "run_cell", meanwhile)
    assert reproduce.main(["--quick", "--models", "popularity", "--out-dir", str(tmp_path)]) == 0
    assert sorted(pd.read_csv(tmp_path / "results.csv")["model"]) == ["bpr-mf", "popularity"]


def test_reproduce_records_the_papers_cut_offs(tmp_path):
    """``--ks 50 100`` (APR's Table 3) adds HR/NDCG/MRR@50 and @100 columns; @10 stays."""
    reproduce = load_script("reproduce")
    argv = ["--quick", "--models", "popularity", "--ks", "50", "100", "--out-dir", str(tmp_path)]
    assert reproduce.main(argv) == 0
    row = pd.read_csv(tmp_path / "results.csv").iloc[0]
    for p in ("full", "uniform-100"):
        assert row[f"{p}/HR@10"] <= row[f"{p}/HR@50"] <= row[f"{p}/HR@100"]
        assert row[f"{p}/NDCG@10"] <= row[f"{p}/NDCG@50"] <= row[f"{p}/NDCG@100"]
    assert row["full/MRR@100"] <= row["full/MRR"]
    assert row["uniform-100/MRR@100"] <= row["uniform-100/MRR"]


def test_apr_robustness_analysis_quick(tmp_path, capsys):
    analyses = load_script("analyses")
    out = tmp_path / "apr.csv"
    assert analyses.main(["apr", "--quick", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert sorted(frame["eps"].unique()) == [0.5, 1.0, 2.0]
    assert set(frame["model"]) == {"bpr-mf", "apr"}
    assert "| bpr-mf | 0.5 |" in capsys.readouterr().out


def test_mfgan_generator_study_dedupes_and_resumes(tmp_path, monkeypatch, capsys):
    analyses = load_script("analyses")
    studies = {"variant": {"MFGAN": {}, "SDSF": {"variant": "sdsf"}}, "combination": {"mean": {}}}
    monkeypatch.setattr(analyses, "study_configs", lambda factors: studies)
    out = tmp_path / "generator.csv"
    argv = ["mfgan-generator", "--quick", "--out", str(out)]
    assert analyses.main(argv) == 0
    frame = pd.read_csv(out).set_index("config")
    assert list(frame.index) == ["SASRec MLE", "MFGAN", "SDSF", "mean"]
    assert frame.loc["SASRec MLE", "delta_full/NDCG@10"] == 0.0
    # "mean" is MFGAN's own configuration: trained once, reported twice, paired with the start
    assert frame.loc["mean", "fit_s"] == frame.loc["MFGAN", "fit_s"]
    delta = frame["full/NDCG@10"] - frame.loc["SASRec MLE", "full/NDCG@10"]
    assert (delta - frame["delta_full/NDCG@10"]).abs().max() < 1e-12
    assert "| variant | SDSF |" in capsys.readouterr().out
    assert analyses.main(argv) == 0  # finished rows are skipped, not appended again
    assert len(pd.read_csv(out)) == 4
    # a later run with a new label for a trained configuration reuses it and trains nothing
    studies["combination"]["MFGAN again"] = {}
    assert analyses.main([*argv, "--configs", "MFGAN again"]) == 0
    frame = pd.read_csv(out).set_index("config")
    assert frame.loc["MFGAN again", "fit_s"] == frame.loc["MFGAN", "fit_s"]
    with pytest.raises(ValueError, match="unknown --configs \\['nope'\\]"):
        analyses.main([*argv, "--configs", "nope"])


def test_mf_step_benchmark_runs(capsys):
    mf_step = load_script("mf_step")
    argv = ["--users", "20", "--items", "30", "--steps", "2", "--batch-size", "8"]
    assert mf_step.main(argv) == 0
    out = capsys.readouterr().out
    assert "| BPR | 20 | 30 | 8 |" in out and "| APR | 20 | 30 | 8 |" in out


def test_acvae_step_benchmark_runs(capsys):
    acvae_step = load_script("acvae_step")
    assert acvae_step.main(["--data", "synthetic", "--steps", "2"]) == 0
    assert "| synthetic |" in capsys.readouterr().out


def test_train_speed_table_formats_a_row():
    train_speed = load_script("train_speed")
    row = {"data": "x", "device": "cpu", "windows": 10, "plain_epoch_s": 2.0, "fused_epoch_s": 1.25,
           "mle_epoch_s": 3.0, "best_epoch": 4, "time_to_best_s": 12.0, "mle_total_s": 20.0,
           "best_valid_ndcg10": 0.1, "test_full_ndcg10": 0.09, "adv_round_s": 1.5,
           "peak_rss_mb": 500.0}  # fmt: skip
    table = train_speed.table([row])
    expected = "| x | cpu | 10 | 2.00 | 1.25 | 3.00 | 4 | 12 | 20 | 0.1000 | 0.0900 | 1.50 | 500 |"
    assert expected in table


def test_reproduce_epoch_caps_reach_the_fits(tmp_path):
    reproduce = load_script("reproduce")
    argv = ["--quick", "--models", "sasrec", "--mle-epochs", "1", "--out-dir", str(tmp_path)]
    assert reproduce.main(argv) == 0
    assert pd.read_csv(tmp_path / "results.csv")["info/epochs_run"].tolist() == [1]


def test_imitation_quick_runs_every_method_and_resumes(tmp_path, capsys):
    imitation = load_script("imitation")
    out = tmp_path / "imitation.csv"
    assert imitation.main(["--quick", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    adversarial = [m for m in imitation.METHODS if not m.startswith(("bc", "pg-oracle", "gail"))]
    expected = {*imitation.METHODS, *(f"{m}@last" for m in adversarial)}
    assert set(table["method"]) == expected and (table["seed"] == 0).all()
    assert table[["reverse_kl_sum", "forward_kl_sum", "test_ndcg10"]].notna().all().all()
    assert (table["reverse_kl_sum"] > 0).all()
    assert table.dropna(subset=["best_round"])["heldout_auc_last"].between(0, 1).all()
    gail = table[table["method"] == "gail-sb3"].iloc[0]  # SB3 PPO, measured as recgym measures
    assert 0 <= gail["heldout_auc_last"] <= 1 and gail["kl_from_start_last"] > 0
    steps = pd.read_csv(tmp_path / "imitation_steps.csv")
    assert sorted(steps["step"].unique()) == list(range(1, 11))
    assert "the adversary's contribution" in capsys.readouterr().out
    assert (tmp_path / "imitation_kl.png").stat().st_size > 1000  # the per-step KL curves
    assert imitation.main(["--quick", "--out", str(out)]) == 0  # finished cells are kept
    assert len(pd.read_csv(out)) == len(table)


def test_reward_snr_quick_measures_every_reward_against_the_oracle(capsys):
    reward_snr = load_script("reward_snr")
    assert reward_snr.main(["--quick", "--threads", "1"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| 0 |")]  # fmt: skip
    table = {name.strip(): (float(snr), float(cosine)) for _, name, snr, cosine in rows}
    assert set(table) == {"oracle", "mfgan-logit", "mfgan-diff", "energy"}
    assert table["oracle"][1] == 1.0  # the oracle's gradient against itself
    assert all(-1.0 <= cosine <= 1.0 for _, cosine in table.values())


def test_mle_levers_times_every_lever_on_synthetic(capsys):
    levers = load_script("mle_levers")
    levers.main(["--data", "synthetic", "--repeats", "1", "--batch-size", "256"])
    out = capsys.readouterr().out
    for name in levers.LEVERS:
        assert f"| {name} |" in out
