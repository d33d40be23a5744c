"""The one progress bar: tqdm with count, ETA and metrics, or silence without importing tqdm."""

from __future__ import annotations

import subprocess
import sys

from recgym._progress import SilentBar, metric_postfix, progress_bar


def test_metric_postfix_keeps_finite_numbers_only():
    row = {"mle/loss": 1.23456, "eval/NDCG@10": float("nan"), "name": "x"}
    assert metric_postfix(row, loss="mle/loss", ndcg="eval/NDCG@10", n="name", m="missing") == {
        "loss": "1.2346"
    }


def test_an_enabled_bar_shows_count_eta_and_metrics(capsys):
    with progress_bar(total=4, desc="fit", initial=1) as bar:
        for _ in range(3):
            bar.update()
            bar.set_postfix(val_ndcg10="0.1234")
    err = capsys.readouterr().err
    assert "fit" in err and "4/4" in err and "val_ndcg10=0.1234" in err and "<00:00" in err


def test_a_disabled_bar_prints_nothing_and_never_imports_tqdm_auto(capsys):
    bar = progress_bar(total=3, desc="fit", enabled=False)
    assert isinstance(bar, SilentBar)
    with bar:
        bar.update()
        bar.set_postfix(x=1)
    assert capsys.readouterr() == ("", "")
    code = (
        "import sys; from recgym._progress import progress_bar; "
        "progress_bar(total=2, desc='x', enabled=False).update(); print('tqdm.auto' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
