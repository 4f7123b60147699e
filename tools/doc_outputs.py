"""Runs the commands behind the docs' sample outputs and checks the docs against them.

Every sample output and every measured figure in the documents of `DOCS`
comes from a command of the project whose output is saved in the repository:

- `docs/outputs/NAME.txt`, written here: the command line (`$ ...`), the
  environment, the command's stdout verbatim, its wall-clock time and, for
  some examples, lines rendered from the `summary.json` the run wrote (the
  per-epoch history, the export checks), each labelled as such;
- `docs/benchmarks.json`, written by `python -m benchmarks` (a source named
  `docs/benchmarks.json#artifacts.export_modes` is the text at that key).

The documents say which source backs what, with HTML comments:

- `<!-- output: SOURCE -->` right before a fenced block (or a Markdown
  table): the block is a verbatim excerpt of SOURCE; a line `...` in it
  stands for skipped lines, and each run of lines between two `...` must
  appear in SOURCE, in order;
- `<!-- figures: SOURCE [SOURCE ...] -->` before prose or a table: every
  figure from there to the next heading or marker must appear in one of
  the sources. A figure is a number written with a `$`, a decimal point, a
  thousands comma, an exponent, a `%`, a trailing `x` or a unit (KiB, µs,
  s, pt, ...): `$35,436`, `75.33%`, `2.04x`, `56.7 µs`, `4.77e-07`. Plain
  integers (epochs, units, years) and inline code are not checked.

A figure that looks measured (a `$`, a unit or a trailing `x`, and in a
table row any number with two decimals) that no marker covers is an error
too, so a new figure cannot be written without its source. Blocks that a tool renders between
`<!-- NAME:start -->` and `<!-- NAME:end -->` (README's benchmark tables,
the tables of docs/strategies.md and docs/shrink.md) are checked by that
tool instead.

`tests/project/test_doc_outputs.py` runs `check()`: it fails when a
document and its saved output disagree. Training is seeded, and most
reruns print the same accuracies and errors, but not all (the housing MLP's
early stopping can end at another epoch); file sizes of `.keras` archives
and every time depend on the run. So after a rerun the documents are
updated from the new files, never the other way round: `--refresh` copies
the new figures into the sample-output excerpts, and `--check` lists the
prose figures left to edit.

Run from the repository root, one command at a time (minutes in all):

    python tools/doc_outputs.py                   # every source, in order
    python tools/doc_outputs.py house_prices cli  # some of them
    python tools/doc_outputs.py --list            # the commands
    python tools/doc_outputs.py --check           # exit 1 if a doc disagrees
    python tools/doc_outputs.py --refresh         # new figures into the sample outputs

`migrate_from_tfmot` needs an interpreter with tfmot (`make bench-env`, or
`TFPRUNE_TFMOT_PYTHON`); `cli` exports the model that `house_prices` wrote.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = os.path.join("docs", "outputs")
DOCS = (  # every hand-written page (docs/BENCHMARKS.md and docs/api.md are generated)
    "README.md",
    "docs/architecture.md",
    "docs/examples.md",
    "docs/pruning.md",
    "docs/regression.md",
    "docs/recurrent.md",
    "docs/export.md",
    "docs/shrink.md",
    "docs/custom_loops.md",
    "docs/migration.md",
    "docs/distributed.md",
    "docs/schedules.md",
    "docs/strategies.md",
    "docs/oneshot.md",
)
ELLIPSIS = "..."
CLI_DIR = "artifacts/doc_outputs"  # what the `cli` source writes and reads
TF_LOG = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:")


# ------------------------------------------------------------------ sources
def _summary(out: str) -> dict:
    with open(os.path.join(ROOT, out, "summary.json")) as f:
        return json.load(f)


def _table(headers, rows) -> list:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.rjust(w) for c, w in zip(row, widths)).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]


def _house_prices_history(out: str) -> list:
    """The pruning run epoch by epoch: what the guard saw."""
    summary = _summary(out)
    history, first = summary["history"], summary["history"]["pruning_starts_at_epoch"] - 1
    baseline = summary["guard"]["baseline"]
    rows = [
        (epoch, f"{s:.2%}", f"${mae:,.0f}", f"{mae / baseline - 1:+.2%}")
        for epoch, (s, mae) in enumerate(
            zip(history["sparsity"][first:], history["val_mae_usd"][first:]), start=1
        )
    ]
    return ["pruning run, epoch by epoch (sparsity of the pruned layers at the epoch end):"] + (
        _table(["epoch", "sparsity", "val MAE", "vs dense val MAE"], rows)
    )


def _air_quality_checks(out: str) -> list:
    """The TFLite files against Keras, and the epochs of each phase."""
    summary = _summary(out)
    checks = ", ".join(
        f"{label} {result['max_abs_error']:.1e}" for label, result in summary["tflite"].items()
    )
    epochs = summary["epochs"]
    return [
        f"epochs: dense {epochs['dense']}, pruning and fine-tuning {epochs['pruned']}",
        f"TFLite vs Keras on 64 test windows, max abs difference: {checks}",
        "weight sparsity of the stripped model: "
        f"{summary['weight_sparsity']:.2%} of the prunable weights",
    ]


@dataclasses.dataclass(frozen=True)
class Command:
    """One command line, run from the repository root, and its exit status."""

    argv: tuple
    status: int = 0

    def shown(self) -> str:
        return "$ " + " ".join(self.argv)


@dataclasses.dataclass(frozen=True)
class Source:
    """The commands behind `docs/outputs/<name>.txt`.

    `extra(out)` returns lines rendered from what the run wrote to `out`
    (its `summary.json`); `needs` names the source whose files it reads;
    `before()` prepares the inputs of the commands; `about()` returns a
    line for the header, on what else the commands ran with.
    """

    name: str
    commands: tuple
    out: str | None = None
    extra: Callable[[str], list] | None = None
    needs: str | None = None
    before: Callable[[], None] | None = None
    about: Callable[[], str] | None = None


def _tfmot_interpreter() -> str:
    """The tfmot side of `migrate_from_tfmot`, found as the example finds it
    (`TFPRUNE_TFMOT_PYTHON`, else `.venv-bench`)."""
    candidates = (os.environ.get("TFPRUNE_TFMOT_PYTHON"),
                  os.path.join(ROOT, ".venv-bench", "bin", "python"))
    python = next((c for c in candidates if c and os.path.exists(c)), None)
    if python is None:
        return "# tfmot interpreter: none (the example skips the tfmot half)"
    code = ("from importlib import metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
            "('tensorflow', 'tf-keras', 'tensorflow-model-optimization')))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return f"# tfmot interpreter: {done.stdout.strip()}"


def _cli_inputs() -> None:
    """A corrupt .tflite file and no `missing.tflite`, for the CLI's errors."""
    folder = os.path.join(ROOT, CLI_DIR)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "corrupt.tflite"), "wb") as f:
        f.write(b"this is not a flatbuffer")
    missing = os.path.join(folder, "missing.tflite")
    if os.path.exists(missing):
        os.remove(missing)


SOURCES = (
    Source(
        "house_prices",
        (Command(("python", "examples/house_prices.py")),),
        out="artifacts/house_prices",
        extra=_house_prices_history,
    ),
    Source(
        "house_prices_tolerance_0.05",
        (Command(("python", "examples/house_prices.py", "--tolerance", "0.05",
                  "--out", "artifacts/house_prices_tolerance_0.05")),),
        out="artifacts/house_prices_tolerance_0.05",
        extra=_house_prices_history,
    ),
    Source(
        "air_quality_lstm",
        (Command(("python", "examples/air_quality_lstm.py")),),
        out="artifacts/air_quality_lstm",
        extra=_air_quality_checks,
    ),
    Source("digits_dense", (Command(("python", "examples/digits_dense.py")),)),
    Source("llm_oneshot", (Command(("python", "examples/llm_oneshot.py")),),
           out="artifacts/llm_oneshot"),
    Source(
        "cli_oneshot",
        (Command(("python", "-m", "tfprune", "--import", "examples/_char_gpt.py", "oneshot",
                  "artifacts/llm_oneshot/dense.keras",
                  "--data", "artifacts/llm_oneshot/calibration.npy", "--method", "wanda",
                  "--granularity", "2:4", "-o", f"{CLI_DIR}/char_gpt_2of4.keras",
                  "--overwrite")),),
        needs="llm_oneshot",
        before=lambda: os.makedirs(os.path.join(ROOT, CLI_DIR), exist_ok=True),
    ),
    Source("custom_training_loop", (Command(("python", "examples/custom_training_loop.py")),)),
    Source(
        "migrate_from_tfmot",
        (Command(("python", "examples/migrate_from_tfmot.py")),),
        about=_tfmot_interpreter,
    ),
    Source(
        "cli",
        tuple(
            Command(("python", "-m", "tfprune", *argv))
            for argv in (
                ("export", "artifacts/house_prices/house_prices_pruned.keras",
                 "--tflite", f"{CLI_DIR}/house_prices_dynamic.tflite", "--quantize", "dynamic",
                 "--overwrite"),
                ("inspect", f"{CLI_DIR}/house_prices_dynamic.tflite"),
            )
        )
        + tuple(
            Command(("python", "-m", "tfprune", "inspect", f"{CLI_DIR}/{name}"), status=1)
            for name in ("missing.tflite", "corrupt.tflite")
        ),
        needs="house_prices",
        before=_cli_inputs,
    ),
)
BY_NAME = {s.name: s for s in SOURCES}


def output_path(name: str) -> str:
    return os.path.join(OUTPUTS, f"{name}.txt")


def _versions() -> str:
    from importlib import metadata

    found = []
    for label, package in (("TensorFlow", "tensorflow"), ("Keras", "keras"),
                           ("LiteRT", "ai-edge-litert")):
        try:
            found.append(f"{label} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join([f"Python {platform.python_version()}"] + found)


def run(source: Source) -> str:
    """Runs `source`'s commands and writes `docs/outputs/<name>.txt`;
    returns the text."""
    if source.needs and not os.path.exists(
        os.path.join(ROOT, BY_NAME[source.needs].out, "summary.json")
    ):
        raise SystemExit(f"{source.name} reads the files of {source.needs}: run that first")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    date = datetime.date.today().isoformat()
    lines = [f"# saved by `python tools/doc_outputs.py {source.name}` on {date}: "
             f"{os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at the start), "
             f"{_versions()}"]
    if source.about is not None:
        lines.append(source.about())
    if source.before is not None:
        source.before()
    for command in source.commands:
        argv = [sys.executable if a == "python" else a for a in command.argv]
        print(command.shown(), file=sys.stderr, flush=True)
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != command.status:
            raise SystemExit(f"{command.shown()} exited with {done.returncode}, not "
                             f"{command.status}:\n{done.stderr[-3000:]}")
        lines.append(command.shown())
        # A failing command's point is its error message, on stderr, among
        # the log lines TensorFlow writes there before its logging is set up.
        errors = [line for line in done.stderr.split("\n") if not TF_LOG.match(line)]
        text = done.stdout + ("\n".join(errors) if command.status else "")
        lines += text.rstrip("\n").split("\n")
        status = f"exit status {done.returncode}, " if done.returncode else ""
        lines.append(f"# {status}wall clock {seconds:.0f} s")
    if source.extra is not None:
        lines += ["", f"# rendered by tools/doc_outputs.py from {source.out}/summary.json:"]
        lines += source.extra(source.out)
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, OUTPUTS), exist_ok=True)
    with open(os.path.join(ROOT, output_path(source.name)), "w") as f:
        f.write(text)
    return text


# ------------------------------------------------------------------- checks
MARKER = re.compile(r"<!--\s*(output|figures):\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```")
HEADING = re.compile(r"^#{1,6} ")
UNIT = r"(?:\s(?:KiB|MiB|µs|ms|s|µg/m³|pt)(?![\w/]))"
NUMBER = re.compile(
    r"(?<![\w.,$-])(\$?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]\d+)?(?:%|x(?!\w))?" + UNIT + r"?)"
    r"(?!\.?\d)"  # not a version: 0.1.0, 2.21.0
)
CODE_SPAN = re.compile(r"`[^`]*`|\]\([^)]*\)|<!--.*?-->")


def load_source(source: str) -> str:
    """The saved text behind a marker: a file, or `FILE.json#key.key`."""
    path, _, key = source.partition("#")
    with open(os.path.join(ROOT, path)) as f:
        if not key:
            return f.read()
        value = json.load(f)
    for part in key.split("."):
        value = value[part]
    return value


def is_figure(token: str) -> bool:
    """A measured-looking number (see the module docstring)."""
    return bool(re.search(r"[$.,%x]|e[-+]|\s", token))


def figures(text: str) -> list:
    """The figures of a piece of prose, inline code and links left out."""
    return [t for t in NUMBER.findall(CODE_SPAN.sub(" ", text)) if is_figure(t)]


def contains_figure(source: str, token: str) -> bool:
    """Whether `token` occurs in `source` as a whole number. A thousands
    comma may be missing there (`23,715` matches `(23715,`), and so may the
    unit, when the source gives it in a table header (`48.5 KiB` matches
    `| 48.5 |`, not `48.5 MiB`)."""
    number, unit = re.fullmatch(r"(.*?)(" + UNIT + r")?", token).groups()
    after = (r"(?:" + re.escape(unit) + r"|(?!" + UNIT + r"))" if unit else "") + \
        r"(?![\d]|[.,]\d)"
    variants = {number} if "$" in number else {number, number.replace(",", "")}
    return any(re.search(r"(?<![\w.,])" + re.escape(v) + after, source) for v in variants)


def excerpt_error(block: str, source: str) -> str | None:
    """None if `block` is an excerpt of `source` (runs of lines between `...`
    lines, in order), else the first run that is not there."""
    lines = source.split("\n")
    position = 0
    runs, current = [], []
    for line in block.split("\n"):
        if line.strip() == ELLIPSIS:
            runs.append(current)
            current = []
        else:
            current.append(line)
    runs.append(current)
    for run_lines in runs:
        if not run_lines:
            continue
        n = len(run_lines)
        for start in range(position, len(lines) - n + 1):
            if lines[start:start + n] == run_lines:
                position = start + n
                break
        else:
            return "\n".join(run_lines)
    return None


@dataclasses.dataclass
class Marked:
    """A marker of a document and what it covers."""

    doc: str
    line: int  # 1-based line of the marker
    kind: str  # "output" or "figures"
    sources: tuple
    text: str  # the fenced block's content, or the prose in scope
    end: int = 0  # 1-based last line in scope (the closing fence of a block)


def marked(doc: str, text: str) -> list:
    """The markers of a document with the block or prose each covers."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        kind, sources = match.group(1), tuple(match.group(2).split())
        if kind == "output":
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j == len(lines):
                found.append(Marked(doc, i + 1, kind, sources, None, i + 1))
            elif FENCE.match(lines[j]):
                indent = FENCE.match(lines[j]).group(1)
                end = next(k for k in range(j + 1, len(lines)) if FENCE.match(lines[k]))
                body = [row[len(indent):] if row.startswith(indent) else row
                        for row in lines[j + 1:end]]
                found.append(Marked(doc, i + 1, kind, sources, "\n".join(body), end + 1))
            else:  # a Markdown table, or any run of non-blank lines
                end = next((k for k in range(j, len(lines)) if not lines[k].strip()), len(lines))
                found.append(Marked(doc, i + 1, kind, sources, "\n".join(lines[j:end]), end))
        else:
            end = next((k for k in range(i + 1, len(lines))
                        if HEADING.match(lines[k]) or MARKER.search(lines[k])), len(lines))
            found.append(Marked(doc, i + 1, kind, sources, "\n".join(lines[i + 1:end]), end))
    return found


OUTPUT_LIKE = re.compile(r"^\s*-{3,}(?: {2}-{3,})+\s*$|\d+(?:\.\d+)? ?(?:KiB|µs)|\d+\.\d+%", re.M)


def unmarked_outputs(text: str) -> list:
    """Line numbers of fenced blocks that look like program output (a table
    rule, a size, a time or a percentage) without an `output` marker."""
    lines = text.split("\n")
    missing, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            language = lines[i].strip()[3:]
            end = next(k for k in range(i + 1, len(lines)) if FENCE.match(lines[k]))
            body = "\n".join(lines[i + 1:end])
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            if language != "python" and OUTPUT_LIKE.search(body) and not (
                MARKER.search(before) and MARKER.search(before).group(1) == "output"
            ):
                missing.append(i + 1)
            i = end
        i += 1
    return missing


GENERATED = re.compile(r"<!--\s*[\w-]+:(start|end)\s*-->")
MEASURED = re.compile(r"^\$|" + UNIT + r"$|x$")
TWO_DECIMALS = re.compile(r"\.\d\d")  # in a table row: 0.883 (ms), 59.89 (%)


def unmarked_figures(doc: str, text: str) -> list:
    """`(line, figure)` of each measured-looking figure (a `$`, a unit or a
    trailing `x`: `$35,436`, `2.5 ms`, `48.5 KiB`, `1.82x`; in a table row,
    also a number with two decimals or more: `0.883`) in prose or a table
    that no marker covers. Fenced blocks (checked as sample outputs)
    and the blocks a tool renders (`<!-- NAME:start -->` to
    `<!-- NAME:end -->`, checked by that tool) are left out."""
    covered = set()
    for m in marked(doc, text):
        covered.update(range(m.line, m.end + 1))
    found, rendered, fenced = [], False, False
    for number, line in enumerate(text.split("\n"), start=1):
        tag = GENERATED.search(line)
        if tag:
            rendered = tag.group(1) == "start"
            continue
        if FENCE.match(line):
            fenced = not fenced
            continue
        if rendered or fenced or number in covered:
            continue
        row = line.lstrip().startswith("|")
        found.extend((number, token) for token in figures(line)
                     if MEASURED.search(token) or (row and TWO_DECIMALS.search(token)))
    return found


def check(docs=DOCS) -> list:
    """Every disagreement between the documents and their saved outputs,
    as readable lines; empty when they agree."""
    errors = []
    for doc in docs:
        with open(os.path.join(ROOT, doc)) as f:
            text = f.read()
        for line in unmarked_outputs(text):
            errors.append(f"{doc}:{line}: a sample output without `<!-- output: SOURCE -->`")
        for line, token in unmarked_figures(doc, text):
            errors.append(f"{doc}:{line}: {token!r} is measured but no `<!-- figures: SOURCE -->` "
                          "covers it")
        for m in marked(doc, text):
            where = f"{doc}:{m.line}"
            try:
                sources = [load_source(s) for s in m.sources]
            except (OSError, KeyError) as e:
                errors.append(f"{where}: no saved output {m.sources} ({e})")
                continue
            if m.kind == "output":
                if m.text is None:
                    errors.append(f"{where}: an output marker with nothing after it")
                    continue
                missing = excerpt_error(m.text, sources[0])
                if missing is not None:
                    errors.append(f"{where}: not in {m.sources[0]}:\n{missing}")
            else:
                tokens = figures(m.text)
                if not tokens:
                    errors.append(f"{where}: a figures marker with no figure after it")
                for token in tokens:
                    if not any(contains_figure(s, token) for s in sources):
                        errors.append(f"{where}: {token!r} is in none of {', '.join(m.sources)}")
    return errors


def _shape(line: str) -> str:
    """A line with its numbers masked and its spacing collapsed: what a
    rerun leaves as it was when only figures change."""
    return " ".join(re.sub(r"\d[\d,]*(?:\.\d+)?(?:e[-+]\d+)?", "N", line).split())


def refreshed(block: str, source: str) -> str | None:
    """`block` with each run of lines (between `...` lines) replaced by the
    lines of `source`, in order, that read the same but for their figures;
    None when a run is not there in any form (a change of wording)."""
    lines, shapes = source.split("\n"), [_shape(line) for line in source.split("\n")]
    position, out, run = 0, [], []
    for line in block.split("\n") + [ELLIPSIS]:
        if line.strip() != ELLIPSIS:
            run.append(line)
            continue
        if run:
            want = [_shape(r) for r in run]
            n = len(run)
            start = next((k for k in range(position, len(lines) - n + 1)
                          if shapes[k:k + n] == want), None)
            if start is None:
                return None
            out.extend(lines[start:start + n])
            position, run = start + n, []
        out.append(line)
    return "\n".join(out[:-1])


def refresh(doc: str) -> list:
    """Rewrites the `output` excerpts of `doc` from their saved outputs
    where only figures changed; returns the excerpts it could not refresh.
    Prose figures are left to the writer: `--check` lists them."""
    path = os.path.join(ROOT, doc)
    with open(path) as f:
        lines = f.read().split("\n")
    failed, changed = [], False
    for m in reversed(marked(doc, "\n".join(lines))):
        if m.kind != "output" or m.text is None:
            continue
        source = load_source(m.sources[0])
        if excerpt_error(m.text, source) is None:
            continue
        new = refreshed(m.text, source)
        if new is None:
            failed.append(f"{doc}:{m.line}")
            continue
        first = next(k for k in range(m.line, len(lines)) if lines[k].strip())
        fence = FENCE.match(lines[first])
        if fence:
            indent = fence.group(1)
            body = [indent + row if row else row for row in new.split("\n")]
            lines[first + 1:m.end - 1] = body
        else:
            lines[first:m.end] = new.split("\n")
        changed = True
    if changed:
        with open(path, "w") as f:
            f.write("\n".join(lines))
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"sources to run (default: all): "
                        f"{', '.join(BY_NAME)}")
    parser.add_argument("--check", action="store_true", help="check the docs, run nothing")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--refresh", action="store_true",
                        help="copy the new figures of the saved outputs into the docs' "
                        "sample outputs, run nothing")
    args = parser.parse_args(argv)
    if args.refresh:
        failed = [where for doc in DOCS for where in refresh(doc)]
        for where in failed:
            print(f"{where}: the excerpt's lines changed beyond their figures; edit it by hand")
        return 1 if failed else 0
    if args.check:
        errors = check()
        print("\n".join(errors) if errors else "the docs agree with their saved outputs")
        return 1 if errors else 0
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown source(s) {unknown}; known: {', '.join(BY_NAME)}")
    for source in [BY_NAME[n] for n in args.names] or SOURCES:
        if args.list:
            print(f"{output_path(source.name)}:")
            print("\n".join(f"  {c.shown()}" for c in source.commands))
            continue
        run(source)
        print(f"wrote {output_path(source.name)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
