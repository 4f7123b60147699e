"""Running a model block by block over the calibration batches.

Sequential calibration (both papers): each block is calibrated on the
outputs of the blocks before it, already pruned. `Program` turns a
Sequential or Functional model (keras_hub backbones and tasks included) into
a flat list of steps in topological order, one per layer call, with nested
Sequential/Functional models inlined (a keras_hub `CausalLM` runs its
backbone's layers as steps of its own). `Program.run` executes the steps in
order over every batch, holding for each batch only the tensors that a
later step still reads (the frontier), and hands the steps that are blocks
to a handler that runs them as often as it needs (statistics, then the
pruned outputs the next steps read). Steps that lead to no block are not
run.

A subclassed model has no graph to walk: `Program.whole(model)` is one step,
the model itself, so all its layers are calibrated together on the dense
model's activations.
"""

from __future__ import annotations

import dataclasses

import keras

from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune._base.channels import graph_view
from tfprune._base.graph import is_graph_model
from tfprune._base.graph import is_graph_subclass
from tfprune.oneshot._data import flat_inputs

__all__ = ["Program", "Step"]


@dataclasses.dataclass(eq=False)
class Step:
    """One call of an operation: what it reads and writes (tensor ids)."""

    op: object
    arguments: object
    reads: list
    writes: list

    @property
    def name(self) -> str:
        """The layer's name (the wrapped layer's, for a tfprune wrapper)."""
        op = walk.unwrap(self.op)
        return getattr(op, "name", type(op).__name__)


def _inlinable(op, node) -> bool:
    """A nested Sequential/Functional model called on its inputs alone."""
    if not isinstance(op, keras.Model) or not (is_graph_model(op) or is_graph_subclass(op)):
        return False
    args, kwargs = node.arguments.args, node.arguments.kwargs
    if len(args) != 1 or any(k not in ("training", "mask") or isinstance(v, keras.KerasTensor)
                             for k, v in kwargs.items()):
        return False
    return len(keras.tree.flatten(args[0])) == len(graph_view(op).inputs)


class Program:
    """A model as steps (see the module docstring).

    Args:
        model: a built Sequential or Functional model (or subclass of one).
    """

    def __init__(self, model):
        self.model = model
        self.alias = {}
        self.steps = []
        self.graph = True
        self.inputs = [id(t) for t in graph_view(model).inputs]
        self._add(model)

    @classmethod
    def whole(cls, model) -> Program:
        """One step: the model called on each batch as it is given."""
        program = cls.__new__(cls)
        program.model, program.alias, program.graph = model, {}, False
        program.inputs = [0]
        program.steps = [Step(model, None, [0], [1])]
        return program

    @staticmethod
    def supports(model) -> bool:
        """Whether `model` has a graph to walk step by step."""
        return is_graph_model(model) or is_graph_subclass(model)

    def _resolve(self, key: int) -> int:
        while key in self.alias:
            key = self.alias[key]
        return key

    def _link(self, key: int, to: int) -> None:
        """Makes tensor `key` stand for tensor `to` (a model called on its
        own inputs, as keras_hub tasks call their backbone, links a tensor
        to itself: nothing to do)."""
        to = self._resolve(to)
        if to != key:
            self.alias[key] = to

    def _add(self, model):
        by_depth = keras_internals.nodes_by_depth(graph_view(model))
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                op = node.operation
                if _inlinable(op, node):
                    inner = graph_view(op)
                    outer = keras.tree.flatten(node.arguments.args[0])
                    for tensor, given in zip(inner.inputs, outer):
                        self._link(id(tensor), id(given))
                    self._add(op)
                    for tensor, made in zip(node.outputs, keras.tree.flatten(inner.outputs)):
                        self._link(id(tensor), id(made))
                    continue
                reads = [self._resolve(id(t)) for t in node.arguments.keras_tensors]
                self.steps.append(Step(op, node.arguments, reads, [id(t) for t in node.outputs]))

    # ---------------------------------------------------------- running
    def _call(self, step, values, b):
        if not self.graph:
            return [self.model(values[0][b])]

        def fill(x):
            if isinstance(x, keras.KerasTensor):
                return values[self._resolve(id(x))][b]
            return x

        args, kwargs = step.arguments.convert(fill)
        return keras.tree.flatten(step.op(*args, **kwargs))

    def _needed(self, blocks) -> list:
        """Which steps must run for the blocks (a block, or read later)."""
        needed, wanted = [False] * len(self.steps), set()
        for i in range(len(self.steps) - 1, -1, -1):
            step = self.steps[i]
            if i in blocks or wanted.intersection(step.writes):
                needed[i] = True
                wanted.update(step.reads)
        return needed

    def run(self, batches, blocks: dict) -> None:
        """Runs the steps over `batches`; `blocks[i](run)` handles step `i`.

        Args:
            batches: the calibration batches (as given; checked against the
                model's inputs).
            blocks: `{step index: handler}`; a handler receives `run()`,
                which runs the step over every batch and returns the
                outputs, calls it as often as it needs and returns the
                outputs the next steps read.
        """
        if self.graph:
            flat = [flat_inputs(self.model, b) for b in batches]
            values = {key: [f[i] for f in flat] for i, key in enumerate(self.inputs)}
        else:
            values = {0: list(batches)}
        needed = self._needed(blocks)
        last_read = {}
        for i, step in enumerate(self.steps):
            for key in step.reads:
                last_read[key] = i
        end = max(blocks) if blocks else -1
        for i, step in enumerate(self.steps[:end + 1]):
            if not needed[i]:
                continue

            def run(step=step):
                return [self._call(step, values, b) for b in range(len(batches))]

            outputs = blocks[i](run) if i in blocks else run()
            for j, key in enumerate(step.writes):
                values[key] = [out[j] for out in outputs]
            for key in step.reads:
                if last_read.get(key) == i:
                    values.pop(key, None)
