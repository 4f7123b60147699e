"""Calibrating and pruning the targets of a model, one block at a time.

For each block (a step of the model's `Program` holding targets), in order:

1. statistics: the block runs over every calibration batch with a hook on
   the `call` of each target's layer that adds the layer's inputs to the
   target's accumulator (`_stats`);
2. pruning: the method turns each kernel and its statistic into a new
   kernel and mask, assigned to the variables (and masks); the statistics
   are dropped;
3. outputs: the block runs again, now pruned, with hooks that measure each
   target's layer-wise error; its outputs are what the next blocks read.

Memory holds one block's statistics, the dense kernels of that block (for
the error) and the calibration activations at the frontier of the graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import keras
from keras import ops

from tfprune.oneshot._graph import Program
from tfprune.oneshot._stats import OutputError
from tfprune.oneshot._stats import statistic

__all__ = ["Target", "calibrate"]


@dataclasses.dataclass(eq=False)
class Target:
    """One kernel to prune, with its view and, once done, its outcome."""

    name: str
    pw: object
    view: object
    mask: object = None
    error: float = None
    block: str = None
    status: str = "pruned"
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """Whether the layer's inputs reach this target (a data view)."""
        return self.view.kind != "tensor"


def _hooked(original, targets, consume):
    def call(*args, **kwargs):
        outputs = original(*args, **kwargs)
        for target in targets:
            for x in target.view.inputs(args, kwargs, outputs, original):
                consume(target, x)
        return outputs

    return call


@contextlib.contextmanager
def _hooks(targets, consume):
    """Hooks `consume(target, rows)` on the calls of the targets' layers."""
    layers = {}
    for target in targets:
        layers.setdefault(id(target.view.layer), (target.view.layer, []))[1].append(target)
    installed = []
    try:
        for layer, mine in layers.values():
            had = "call" in vars(layer)
            original = layer.call
            layer.call = _hooked(original, mine, consume)
            installed.append((layer, had, original))
        yield
    finally:
        for layer, had, original in installed:
            if had:
                layer.call = original
            else:
                del layer.call


def _assign(variable, value):
    variable.assign(ops.cast(value, variable.dtype))


def _prune(target, method, stat):
    """Prunes one target; returns `(dense, pruned)` matrices."""
    view = target.view
    # A copy: on PyTorch a reshaped variable shares its storage, and the
    # assignment below would change `dense` too.
    dense = ops.copy(view.to_2d(target.pw.variable))
    try:
        new, keep, info = method.prune(dense, stat, view.gates)
    except FloatingPointError as e:
        raise ValueError(
            f"The calibration inputs of '{target.name}' gave statistics that cannot be "
            f"inverted ({e}): the data or the layer's inputs hold NaN or infinite values. "
            f"Received: data=<inputs giving NaN or inf at '{target.name}'>") from None
    _assign(target.pw.variable, view.from_2d(new))
    if target.mask is not None:
        _assign(target.mask, view.from_2d(keep))
    target.info = info
    return dense, new


class _Progress:
    def __init__(self, total, verbose):
        self.verbose, self.total, self.done = verbose, total, 0
        self.bar = keras.utils.Progbar(total, verbose=1) if verbose == 1 and total else None
        self.peak = 0

    def block(self, name, targets, seconds, nbytes):
        self.done += 1
        self.peak = max(self.peak, nbytes)
        if self.bar is not None:
            self.bar.update(self.done)
        elif self.verbose == 2:
            print(f"block {self.done}/{self.total} '{name}': {len(targets)} tensors, "
                  f"{seconds:.1f} s")


def _handler(step, targets, method, progress):
    def handle(run):
        start = time.perf_counter()
        stats = {}
        if method.statistic is not None:
            stats = {t: statistic(method.statistic, t.view.features) for t in targets}
            with _hooks(targets, lambda t, x: stats[t].update(x)):
                run()
        nbytes = sum(s.nbytes for s in stats.values())
        errors = {}
        for t in targets:
            t.block = step.name
            if t in stats and not stats[t].tokens:
                t.status = "skipped: its layer was not called during calibration"
                continue
            errors[t] = OutputError(*_prune(t, method, stats.pop(t, None)))
        del stats
        with _hooks(list(errors), lambda t, x: errors[t].update(x)):
            outputs = run()
        for t, error in errors.items():
            t.error = error.relative
        progress.block(step.name, targets, time.perf_counter() - start,
                       nbytes + sum(e.nbytes for e in errors.values()))
        return outputs

    return handle


def _blocks(program, targets) -> dict:
    """`{step index: targets}`: each target in the first step holding it."""
    left = {id(t.pw.variable): t for t in targets}
    blocks = {}
    for i, step in enumerate(program.steps):
        if not left or not isinstance(step.op, keras.layers.Layer):
            continue
        mine = [left.pop(id(v)) for v in step.op.weights if id(v) in left]
        if mine:
            blocks[i] = mine
    return blocks


def calibrate(model, targets, method, batches, verbose) -> int:
    """Prunes `targets` of `model` (see the module docstring).

    Without `batches` (Magnitude), every target is pruned at once. Targets
    that no step of the model's graph holds are calibrated in a last pass
    of the whole model.

    Returns:
        The peak bytes of calibration statistics (and dense kernels) held.

    Raises:
        ValueError: if a batch does not fit the model, or a layer's
            statistics hold NaN or infinite values.
    """
    tensor_only = [t for t in targets if not t.calibrated]
    for t in tensor_only if batches is not None else targets:
        _prune(t, method, None)
    if batches is None:
        return 0
    calibrated = [t for t in targets if t.calibrated]
    if not calibrated:
        return 0
    programs = []
    if Program.supports(model):
        program = Program(model)
        blocks = _blocks(program, calibrated)
        programs.append((program, blocks))
        left = [t for t in calibrated if not any(t in b for b in blocks.values())]
    else:
        left = calibrated
    if left:
        whole = Program.whole(model)
        programs.append((whole, {0: left}))
    progress = _Progress(sum(len(b) for _, b in programs), verbose)
    for program, blocks in programs:
        handlers = {i: _handler(program.steps[i], ts, method, progress)
                    for i, ts in blocks.items()}
        program.run(batches, handlers)
    return progress.peak

