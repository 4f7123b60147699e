"""Every sample output and measured figure in the docs comes from a saved output.

The saved outputs are written by `python tools/doc_outputs.py` (see its
docstring for the markers). The fast tests compare the documents with the
saved files; the slow one reruns the quickest documented command and
compares it with its saved output.
"""

import os
import re
import subprocess
import sys

import pytest

from tools import doc_outputs

ROOT = doc_outputs.ROOT


def _read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


@pytest.mark.parametrize("doc", doc_outputs.DOCS)
def test_doc_agrees_with_its_saved_outputs(doc):
    errors = doc_outputs.check([doc])
    assert not errors, "\n".join(errors) + "\n(rerun `python tools/doc_outputs.py NAME` and " \
        "copy from docs/outputs/, never the other way round)"


def test_measured_docs_are_backed():
    markers = [m for doc in doc_outputs.DOCS for m in doc_outputs.marked(doc, _read(doc))]
    backed = {m.doc for m in markers}
    for doc in ("docs/examples.md", "docs/regression.md", "docs/recurrent.md",
                "docs/export.md", "docs/shrink.md"):
        assert doc in backed, doc
    used = {s.partition("#")[0] for m in markers for s in m.sources}
    saved = {os.path.join(doc_outputs.OUTPUTS, f) for f in os.listdir(
        os.path.join(ROOT, doc_outputs.OUTPUTS))}
    assert saved <= used, f"saved outputs no document shows: {sorted(saved - used)}"


@pytest.mark.parametrize("source", doc_outputs.SOURCES, ids=lambda s: s.name)
def test_saved_output_holds_its_commands(source):
    text = _read(doc_outputs.output_path(source.name))
    assert text.startswith(f"# saved by `python tools/doc_outputs.py {source.name}` on ")
    shown = [line for line in text.split("\n") if line.startswith("$ ")]
    assert shown == [c.shown() for c in source.commands]


# ------------------------------------------------------------------ checker
SAVED = """$ python example.py
model  test MAE  size
-----  --------  --------
dense   $32,638  42.8 KiB
pruned  $33,437  21.1 KiB
pruned at 75.33%, speed-up 3.09x, error 9.54e-07; Dataset(train=(23715, 15))
"""


def test_excerpts_must_be_verbatim_and_in_order():
    assert doc_outputs.excerpt_error(SAVED.split("\n", 1)[1], SAVED) is None
    assert doc_outputs.excerpt_error("$ python example.py\n...\npruned  $33,437  21.1 KiB",
                                     SAVED) is None
    assert doc_outputs.excerpt_error("pruned  $33,437  21.2 KiB", SAVED) == \
        "pruned  $33,437  21.2 KiB"
    assert doc_outputs.excerpt_error("pruned  $33,437  21.1 KiB\n...\ndense   $32,638  42.8 KiB",
                                     SAVED) == "dense   $32,638  42.8 KiB"


@pytest.fixture
def write_doc(tmp_path, monkeypatch):
    """A repository in `tmp_path` with `SAVED` as docs/saved.txt;
    `write_doc(text)` writes docs/doc.md (at `write_doc.path`)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "saved.txt").write_text(SAVED)
    monkeypatch.setattr(doc_outputs, "ROOT", str(tmp_path))

    def write(text):
        write.path.write_text(text)

    write.path = tmp_path / "docs" / "doc.md"
    return write


def test_figures_are_found_in_the_saved_output():
    prose = ("The test MAE moves from $32,638 to $33,437 (`--sparsity 0.95`) at 75.33%, "
             "3.09x faster, on 23,715 windows, 9.54e-07 apart; 16 units, epoch 25. "
             "The file is 21.1 KiB.")
    tokens = doc_outputs.figures(prose)
    assert tokens == ["$32,638", "$33,437", "75.33%", "3.09x", "23,715", "9.54e-07",
                      "21.1 KiB"]
    assert all(doc_outputs.contains_figure(SAVED, t) for t in tokens)
    for wrong in ("$32,639", "75.3%", "5.33%", "3.1x", "21.1 MiB", "1.1 KiB", "42.8 µs"):
        assert not doc_outputs.contains_figure(SAVED, wrong), wrong


def test_check_reports_a_figure_or_block_that_disagrees(write_doc):
    doc = (
        "# Title\n\n<!-- output: docs/saved.txt -->\n```\ndense   $32,638  42.8 KiB\n```\n\n"
        "<!-- figures: docs/saved.txt -->\nPruned to 75.33%, $33,437 in test MAE, "
        "3.10x faster.\n\n# Next\n\nNot checked: 1.5%.\n\n```\nrule  -----\n-----  -----\n```\n"
    )
    write_doc(doc)
    errors = doc_outputs.check(["docs/doc.md"])
    assert errors == [
        "docs/doc.md:15: a sample output without `<!-- output: SOURCE -->`",
        "docs/doc.md:8: '3.10x' is in none of docs/saved.txt",
    ]
    write_doc(doc.replace("42.8", "42.9"))
    assert any("not in docs/saved.txt" in e for e in doc_outputs.check(["docs/doc.md"]))


def test_a_measured_figure_needs_a_marker(write_doc):
    doc = (
        "# Title\n\nSince tfprune 0.1.0 on TensorFlow 2.21.0, 16 units at 80%.\n"
        "One update takes 2.5 ms, $32,638 in MAE, 3.09x faster; lr 1e-3.\n\n"
        "<!-- figures: docs/saved.txt -->\nCovered: 3.09x and 21.1 KiB.\n\n"
        "# Next\n\n| file | size |\n| --- | --- |\n| m.tflite | 42.8 KiB |\n| update | 0.883 |\n"
        "| tolerance | 1e-4, 0.1 |\n\n"
        "<!-- table:start -->\nRendered by a tool: 9.9 ms.\n<!-- table:end -->\n\n"
        "```python\nmodel.fit(x, y)  # 7.5 s\n```\n"
    )
    write_doc(doc)
    flagged = [(4, "2.5 ms"), (4, "$32,638"), (4, "3.09x"), (13, "42.8 KiB"), (14, "0.883")]
    assert doc_outputs.unmarked_figures("docs/doc.md", doc) == flagged
    assert doc_outputs.check(["docs/doc.md"]) == [
        f"docs/doc.md:{line}: {token!r} is measured but no `<!-- figures: SOURCE -->` covers it"
        for line, token in flagged]


def test_refresh_copies_new_figures_and_nothing_else(write_doc):
    old_block = "model  test MAE  size\n...\ndense   $31,000  42.8 KiB\npruned  $33,437  21.1 KiB"
    assert doc_outputs.refreshed(old_block, SAVED) == (
        "model  test MAE  size\n...\ndense   $32,638  42.8 KiB\npruned  $33,437  21.1 KiB")
    assert doc_outputs.refreshed("dense  $31,000  42.8 MiB", SAVED) is None  # not a figure
    assert doc_outputs.refreshed("pruned  $1\ndense  $2", SAVED) is None  # not in order
    doc = ("# Title\n\n<!-- output: docs/saved.txt -->\n  ```\n  $ python example.py\n  ...\n"
           "  dense   $9  1.0 KiB\n  ```\n\n<!-- output: docs/saved.txt -->\n```\nsmall  $1\n```\n")
    write_doc(doc)
    assert doc_outputs.refresh("docs/doc.md") == ["docs/doc.md:10"]  # reworded: by hand
    assert write_doc.path.read_text() == doc.replace(
        "  dense   $9  1.0 KiB", "  dense   $32,638  42.8 KiB")


# --------------------------------------------------------------------- rerun
NUMBER = re.compile(r"\d[\d,]*\.\d+|\d[\d,]*")


def _masked(text):
    """The lines of an output without its timings, numbers masked."""
    keep = [line for line in text.split("\n")
            if not line.startswith("#") and not re.match(r"wrote .* in \d+ s$", line)]
    return [NUMBER.sub("N", line) for line in keep], [
        float(n.replace(",", "")) for line in keep for n in NUMBER.findall(line)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_custom_training_loop_reproduces_its_saved_output(tmp_path):
    """A fresh run prints the same lines, and the same numbers up to the
    floating-point differences of another machine (2 test images)."""
    done = subprocess.run(
        [sys.executable, "examples/custom_training_loop.py", "--out", str(tmp_path)],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, check=True,
    )
    saved = _read(doc_outputs.output_path("custom_training_loop")).split("\n", 2)[2]
    fresh_lines, fresh = _masked(done.stdout)
    saved_lines, expected = _masked(saved)
    assert fresh_lines == saved_lines
    assert fresh == pytest.approx(expected, rel=0.01, abs=0.01)
