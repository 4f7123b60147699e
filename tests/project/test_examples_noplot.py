"""The examples run without matplotlib (the `plot` extra): the plot is skipped."""

import json
import os
import sys

import pytest

from examples import _common

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _plot(path):
    return _common.plot_sparsity_and_metric(
        path,
        sparsity=[0.0, 0.4, 0.8],
        metric=[1.0, 0.9, 0.95],
        metric_label="loss",
        phases=[("dense", 1), ("pruning", 2)],
        title="test",
    )


@pytest.fixture
def no_matplotlib(monkeypatch):
    """`import matplotlib` fails, as where the `plot` extra is not installed."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_plot_is_skipped_with_an_install_hint_without_matplotlib(tmp_path, no_matplotlib, capsys):
    path = tmp_path / "training.png"

    assert _plot(path) is None
    assert not path.exists()
    out = capsys.readouterr().out
    assert "matplotlib is not installed: skipped the plot training.png" in out
    assert "pip install 'tfprune[plot]'" in out
    assert _common.written(None, "models", "summary.json") == "models, summary.json"


def test_plot_is_written_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "training.png"
    assert _plot(path) == path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert _common.written(path, "models", "summary.json") == "models, summary.json, training.png"


@pytest.mark.timeout(120)
def test_example_runs_to_the_end_without_matplotlib(tmp_path, no_matplotlib, capsys):
    from examples import custom_training_loop

    out = str(tmp_path / "loop")
    custom_training_loop.main(["--quick", "--out", out])
    with open(os.path.join(out, "summary.json")) as f:
        saved = json.load(f)
    assert saved["files"]["plot"] is None
    assert sorted(os.listdir(out)) == sorted(
        ["summary.json", os.path.basename(saved["files"]["model"])]
    )
    printed = capsys.readouterr().out
    assert "pip install 'tfprune[plot]'" in printed
    assert f"wrote {out}/ (model, summary.json) in" in printed
