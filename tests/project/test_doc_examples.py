"""Every fenced Python example of the README, docs/ and the package's
docstrings runs, on the backend it is written for.

The examples are the ```python blocks of README.md, of docs/*.md (not the
generated pages: docs/api.md is made from the docstrings, which are covered
instead) and of the docstrings of every tfprune module and of the modules
shipped beside the package (setup.cfg's `py_modules`), found as doctest finds
the `>>>` examples. A plain scan of the files must find the same fences.
Each block is one test case, named by its page and its place on the page
(`docs/pruning.md:3`) or by the object whose docstring holds it
(`tfprune.criteria.Criterion`, with `:2` for a second block).

A block runs as written, in a fresh namespace and a temporary working
directory, after its prelude (PRELUDES, keyed by the block, else by its page
or docstring): the names a fragment takes from the text around it, such as a
model, a few hundred rows of data or a pruned model. Preludes are small, so
that the examples' own epochs and sizes stay cheap. Blocks run on
TensorFlow unless BACKENDS says otherwise: a block written for JAX runs in
the JAX pass of `make test`; one that needs two devices runs in a child
process (IN_CHILD). EXCLUDED lists the blocks that cannot run here, each with
its reason.
"""

from __future__ import annotations

import collections
import configparser
import contextlib
import dataclasses
import doctest
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import textwrap

import keras
import pytest

import tfprune

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Pages written by a program, not by hand: no examples of their own.
GENERATED_PAGES = {
    os.path.join("docs", "api.md"): "written from the docstrings by tools/gen_api_docs.py",
    os.path.join("docs", "BENCHMARKS.md"): "written by `python -m benchmarks`",
}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
# Any fence whose language starts with "py": a block fenced as `py` or
# `python3` would escape FENCE, so the count check notices it.
OPENING = re.compile(r"^[ \t]*```[ \t]*py", re.M)


@dataclasses.dataclass(frozen=True)
class Block:
    id: str  # docs/pruning.md:3, tfprune.criteria.Criterion, tfprune.x.Y:2
    owner: str  # the page, or the object whose docstring holds the block
    path: str  # the file, relative to ROOT
    line: int  # the line of the opening fence in `path`, from 1
    code: str


def _blocks_in(text: str, owner: str, path: str, first_line: int) -> list[Block]:
    found = list(FENCE.finditer(text))
    blocks = []
    for index, match in enumerate(found, 1):
        name = f"{owner}:{index}" if path.endswith(".md") or len(found) > 1 else owner
        line = first_line + text.count("\n", 0, match.start())
        blocks.append(Block(name, owner, path, line, textwrap.dedent(match.group("code"))))
    return blocks


def _pages() -> list[str]:
    docs = sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs")))
    return ["README.md"] + [p for p in docs if p.endswith(".md") and p not in GENERATED_PAGES]


def _page_blocks() -> list[Block]:
    blocks = []
    for page in _pages():
        with open(os.path.join(ROOT, page)) as f:
            blocks += _blocks_in(f.read(), page, page, 1)
    return blocks


def _beside() -> list[str]:
    """The modules shipped beside the package (setup.cfg's `py_modules`)."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    return config.get("options", "py_modules", fallback="").split()


def _modules() -> list:
    """Every module of the package (not `__main__`: it runs the command
    line on import), and the modules beside it."""
    names = ["tfprune"] + [info.name for info in pkgutil.walk_packages(tfprune.__path__, "tfprune.")
                           if info.name.rsplit(".", 1)[-1] != "__main__"]
    return [importlib.import_module(name) for name in names + _beside()]


def _docstring_blocks() -> list[Block]:
    finder = doctest.DocTestFinder(exclude_empty=False)
    blocks = []
    for module in _modules():
        for test in finder.find(module):
            path = os.path.relpath(test.filename, ROOT)
            # `lineno` (from 0) is the line where the docstring opens.
            blocks += _blocks_in(test.docstring or "", test.name, path, (test.lineno or 0) + 1)
    return blocks


BLOCKS = _page_blocks() + _docstring_blocks()

# ------------------------------------------------------------------ preludes
IMPORTS = """\
import keras
import numpy as np
import tensorflow as tf
import tfprune
"""

# Regression data and an MLP with two hidden layers ("regression" protects
# the first and the last layer, so it needs a third one to prune).
MLP = IMPORTS + """\
rng = np.random.default_rng(0)
w = rng.random((8, 1), dtype="float32")
x = rng.random((256, 8), dtype="float32")
y = x @ w
x_val = rng.random((64, 8), dtype="float32")
y_val = x_val @ w
model = keras.Sequential([
    keras.Input((8,)),
    keras.layers.Dense(32, activation="relu", name="hidden"),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(1),
])
"""

# The MLP wrapped and pruned to 80% (in one shot: the same wrappers and masks
# as after training, without a fit to compile).
PRUNED = MLP + """\
pruned = tfprune.prune_oneshot(model, tfprune.oneshot.Magnitude(0.8), verbose=0)
pruned.compile("adam", "mse")
"""

# Ten classes, integer labels, logits out.
CLASSIFIER = IMPORTS + """\
rng = np.random.default_rng(0)
x = rng.random((256, 16), dtype="float32")
labels = x[:, :10].argmax(axis=1).astype("int32")
dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(64)
model = keras.Sequential([
    keras.Input((16,)),
    keras.layers.Dense(32, activation="relu"),
    keras.layers.Dense(10),
])
"""

# A PM2.5-like forecaster: 24 time steps of 4 features.
LSTM = IMPORTS + """\
rng = np.random.default_rng(0)
x = rng.random((64, 24, 4), dtype="float32")
y = x[:, -1, :1]
x_test = rng.random((64, 24, 4), dtype="float32")
model = keras.Sequential([
    keras.Input((24, 4)),
    keras.layers.LSTM(16, name="lstm"),
    keras.layers.Dense(1, name="pm25"),
])
pruned = tfprune.prune(model, 0.8, strategy="recurrent")
"""

LSTM_TRAINED = LSTM + """\
pruned.compile("adam", "mse")
pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
"""

TFMOT = MLP + """\
import tfprune.compat.tfmot as tfmot
"""

TFMOT_PRUNED = TFMOT + """\
schedule = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=16)
pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
"""

STRATEGIES = MLP + """\
from tfprune import criteria, granularity, schedules, strategies
schedule = schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2000)
"""

# The custom loop of docs/custom_loops.md, for the docstring that sketches it.
CUSTOM_LOOP = CLASSIFIER + """\
pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.8, 0, 40))
optimizer = keras.optimizers.Adam(1e-3)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, pruned(x, training=True))
    grads = tape.gradient(loss, pruned.trainable_variables)
    optimizer.apply(grads, pruned.trainable_variables)
    return loss
"""

# A small BERT backbone (keras_hub), pruned and stripped.
BERT = IMPORTS + """\
import warnings
import keras_hub
backbone = keras_hub.models.BertBackbone(
    vocabulary_size=64, num_layers=1, num_heads=2, hidden_dim=16, intermediate_dim=32,
    max_sequence_length=16)
with warnings.catch_warnings():  # "its copy is a plain Functional model"
    warnings.simplefilter("ignore")
    final = tfprune.strip(tfprune.prune(backbone, 0.5))
rng = np.random.default_rng(0)
ids = rng.integers(0, 64, (4, 16)).astype("int32")
segments = np.zeros((4, 16), "int32")
mask = np.ones((4, 16), "int32")
"""

# A model of the shape XNNPACK's sparse inference runs (see the policy).
MOBILE = TFMOT + """\
L = keras.layers
model = keras.Sequential([
    keras.Input((32, 32, 3)), L.ZeroPadding2D(1), L.Conv2D(8, 3, strides=2), L.ReLU(),
    L.Conv2D(16, 1), L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(10)])
schedule = tfmot.sparsity.keras.PolynomialDecay(0.25, 0.75, begin_step=0, end_step=100)
"""

# A small CNN with a residual Add: the coupled channels docs/shrink.md is about.
RESIDUAL_CNN = IMPORTS + """\
rng = np.random.default_rng(0)
x = rng.random((64, 8, 8, 3), dtype="float32")
y = x.mean(axis=(1, 2, 3))[:, None]
inputs = keras.Input((8, 8, 3))
h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
r = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
h = keras.layers.Add()([h, keras.layers.Conv2D(16, 3, padding="same")(r)])
outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(h))
model = keras.Model(inputs, outputs)
"""

# By block (`docs/export.md:2`), else by page or docstring (`docs/export.md`);
# a block with neither gets IMPORTS.
PRELUDES = {
    "README.md:1": IMPORTS,
    # Not the quickstart's model: "regression" protects the first and the last
    # layer, all it has, and `prune` raises when every layer is protected.
    "README.md": MLP + """\
schedule = tfprune.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=200)
xv, yv = x_val, y_val
x_calibration = x[:128]
""",
    "README.md:4": PRUNED,
    "docs/custom_loops.md": CLASSIFIER,
    "docs/distributed.md": IMPORTS + """\
rng = np.random.default_rng(0)
x = rng.random((256, 8), dtype="float32")
y = x.sum(axis=1, keepdims=True)
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)

def build_model():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(1)])
""",
    "docs/distributed.md:3": "import jax\nimport keras\n",
    "docs/export.md": PRUNED,
    "docs/export.md:2": PRUNED + 'tfprune.export.saved_model(pruned, "exported_model")\n',
    "docs/export.md:3": PRUNED + """\
result = tfprune.export.tflite(pruned, "model.tflite", quantize="dynamic")
""",
    "docs/migration.md": MLP + """\
end_step = 16  # 8 batches per epoch, 2 epochs
logdir = "logs"
""",
    "docs/oneshot.md": MLP + "x_train, y_train = x, y\n",
    "docs/pruning.md": MLP + """\
sparsity = 0.8
optimizer, loss = "adam", "mse"
""",
    "docs/pruning.md:2": BERT,
    "docs/pruning.md:4": PRUNED + "final = tfprune.strip(pruned)\n",
    "docs/recurrent.md": LSTM,
    "docs/recurrent.md:2": LSTM_TRAINED,
    "docs/recurrent.md:3": LSTM + "small = tfprune.shrink(tfprune.strip(pruned))\n",
    "docs/regression.md": MLP + """\
schedule = tfprune.schedules.PolynomialDecay(0.0, 0.95, begin_step=0, end_step=5000, power=1.0)
pruned = tfprune.prune(model, schedule, strategy="regression")
""",
    "docs/shrink.md:1": PRUNED,
    "docs/shrink.md:2": RESIDUAL_CNN,
    "docs/strategies.md": STRATEGIES,
    "tfprune": MLP,
    "tfprune._analysis.report.sparsity_report": PRUNED,
    "tfprune._analysis.sensitivity.sensitivity": MLP,
    "tfprune._base.walk.register_prunable_layer": IMPORTS + """\
class MyProjection(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), name="w")

    def call(self, x):
        return x @ self.w
""",
    "tfprune._shrink._core.shrink": PRUNED,
    "tfprune._training.callback.PruningCallback:1": MLP,
    "tfprune._training.callback.PruningCallback:2": CUSTOM_LOOP,
    "tfprune._training.prune.prune": MLP,
    "tfprune._training.quality_guard.QualityGuard": MLP + """\
pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.9, 0, 200))
pruned.compile("adam", "mse", metrics=["mae"])
""",
    "tfprune._training.strip.strip": PRUNED,
    "tfprune._training.update.MaskUpdate": MLP + """\
from tfprune._training.update import MaskUpdate
pruned = tfprune.prune(model, 0.5)
wrappers = tfprune.find_wrappers(pruned)
plan = wrappers[0].strategy.plan(pruned)
slot_of = {id(slot.weight.variable): slot for w in wrappers for slot in w.slots}
slots = [slot_of.get(id(pw.variable)) for pw in plan.weights]
""",
    "tfprune._training.wrapper.PruningWrapper": IMPORTS + """\
rng = np.random.default_rng(0)
x = rng.random((256, 20), dtype="float32")
y = x.sum(axis=1, keepdims=True)
""",
    "tfprune._training.wrapper.find_wrappers": MLP,
    "tfprune.cli": PRUNED + 'tfprune.strip(pruned).save("model.keras")\n',
    "tfprune.compat.tfmot": MLP,
    "tfprune.compat.tfmot._callbacks.UpdatePruningStep":
        TFMOT_PRUNED + 'pruned.compile("adam", "mse")\n',
    "tfprune.compat.tfmot._policy.PruneForLatencyOnXNNPack": MOBILE,
    "tfprune.compat.tfmot._policy.PruningPolicy": TFMOT,
    "tfprune.compat.tfmot._prune.prune_low_magnitude": TFMOT,
    "tfprune.compat.tfmot._prune.prune_scope": TFMOT_PRUNED + 'pruned.save("pruned.keras")\n',
    "tfprune.compat.tfmot._schedules.PruningSchedule": TFMOT,
    "tfprune.compat.tfmot._wrapper.PrunableLayer": TFMOT,
    "tfprune.export": PRUNED,
    "tfprune.export._backend": PRUNED,
    "tfprune.export._inspect.inspect": PRUNED + 'tfprune.export.tflite(pruned, "model.tflite")\n',
    "tfprune.export._saved_model.saved_model": PRUNED,
    "tfprune.export._tflite.tflite": PRUNED,
    "tfprune.oneshot._api.prune_oneshot": MLP + "x_calibration = x\n",
    "tfprune.oneshot._methods.SparseGPT": MLP + "x_calibration = x[:128]\n",
    "tfprune.oneshot._methods.Wanda": MLP + "x_calibration = x[:128]\n",
    "tfprune.strategies._sensitivity.SensitivityAllocation": MLP,
    "tfprune.strategies._strategy.Strategy": MLP,
    "tfprune_cli.main": PRUNED + 'tfprune.strip(pruned).save("model.keras")\n',
}

# Where a block is written for another backend than TensorFlow (the default).
BACKENDS = {
    "docs/distributed.md:2": ("jax",),  # "With KERAS_BACKEND=jax ..."
    "docs/distributed.md:3": ("jax",),  # keras.distribution.ModelParallel
    # "A tfmot pruning program runs on Keras 3 as it is (tested on TensorFlow and JAX)".
    "docs/migration.md:1": ("tensorflow", "jax"),
    "tfprune.export._backend": ("jax",),  # "on JAX, the call is the same"
}

# Blocks run in a child process, with these environment variables.
IN_CHILD = {
    # A mesh of (1, 2) devices: two virtual CPU devices, set before JAX starts.
    "docs/distributed.md:3": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
}

EXCLUDED = {
    "docs/migration.md:2": "tfmot 0.8.1 on tf_keras (TF_USE_LEGACY_KERAS=1), which only "
                           "`make bench-env`'s .venv-bench has",
    "docs/oneshot.md:3": "downloads the gpt2_base_en preset; tests/oneshot/"
                         "test_oneshot_keras_hub.py prunes a GPT2CausalLM built from its "
                         "constructor in place and generates with it",
}


def _prelude(block: Block) -> str:
    return PRELUDES.get(block.id, PRELUDES.get(block.owner, IMPORTS))


def _backends(block: Block) -> tuple:
    return BACKENDS.get(block.id, ("tensorflow",))


def _param(block: Block):
    marks = [pytest.mark.skip(reason=EXCLUDED[block.id])] if block.id in EXCLUDED else []
    return pytest.param(block, id=block.id, marks=marks)


# -------------------------------------------------------------- extraction
def _fence_lines(path: str) -> list[int]:
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return [text.count("\n", 0, m.start()) + 1 for m in OPENING.finditer(text)]


def _package_files() -> list[str]:
    files = [f"{name}.py" for name in _beside()]
    for directory, _, names in os.walk(os.path.join(ROOT, "tfprune")):
        files += [os.path.relpath(os.path.join(directory, n), ROOT) for n in names
                  if n.endswith(".py")]
    return sorted(files)


def test_every_python_fence_is_found_where_it_is():
    """The blocks found are, page by page and file by file, the fences that a
    plain scan of the files finds: a block the extraction misses (a fence it
    does not parse, a docstring doctest does not reach) fails here."""
    found = collections.defaultdict(list)
    for block in BLOCKS:
        found[block.path].append(block.line)
    sources = _pages() + _package_files()
    assert set(found) <= set(sources)
    for source in sources:
        assert sorted(found[source]) == _fence_lines(source), source
    pages = [b for b in BLOCKS if b.path.endswith(".md")]
    assert len(pages) >= 30 and len(BLOCKS) - len(pages) >= 30
    assert len({b.id for b in BLOCKS}) == len(BLOCKS)


def test_the_tables_name_blocks_that_exist():
    """Preludes, backends, child processes and exclusions rot if they name a
    block (or a page, or a docstring) that is gone."""
    names = {b.id for b in BLOCKS} | {b.owner for b in BLOCKS}
    for table in (PRELUDES, BACKENDS, IN_CHILD, EXCLUDED):
        assert set(table) <= names, set(table) - names
    assert set(IN_CHILD) | set(EXCLUDED) <= {b.id for b in BLOCKS}
    assert all(os.path.isfile(os.path.join(ROOT, page)) for page in GENERATED_PAGES)
    assert len(EXCLUDED) <= 3


def test_blocks_that_use_another_backend_run_on_it():
    """A block that names jax or torch is run on that backend."""
    for block in BLOCKS:
        for backend in ("jax", "torch"):
            if re.search(rf"\b{backend}\b", block.code):
                assert backend in _backends(block) or block.id in EXCLUDED, block.id


# -------------------------------------------------------------- execution
@contextlib.contextmanager
def _global_state_kept():
    """Registrations, the distribution and the environment as they were."""
    custom_objects = dict(keras.saving.get_custom_objects())
    environ = dict(os.environ)
    try:
        yield
    finally:
        keras.distribution.set_distribution(None)
        registered = keras.saving.get_custom_objects()
        registered.clear()
        registered.update(custom_objects)
        for name in set(os.environ) - set(environ):
            del os.environ[name]
        os.environ.update(environ)


def _run_in_child(block: Block, tmp_path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_prelude(block) + "\n" + block.code)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=keras.backend.backend(),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **IN_CHILD[block.id])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_example_runs(block, tmp_path, monkeypatch):
    backends = _backends(block)
    if keras.backend.backend() not in backends:
        pytest.skip(f"written for {' and '.join(backends)}: that pass of `make test` runs it")
    monkeypatch.chdir(tmp_path)
    if block.id in IN_CHILD:
        _run_in_child(block, tmp_path)
        return
    # The block is compiled at its own line of its file, so a traceback
    # points into the page or the docstring.
    code = compile("\n" * block.line + block.code, os.path.join(ROOT, block.path), "exec")
    namespace = {"__name__": "doc_example"}
    with _global_state_kept():
        exec(compile(_prelude(block), f"<prelude of {block.id}>", "exec"), namespace)
        exec(code, namespace)
