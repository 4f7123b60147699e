"""`tfprune.shrink`: a smaller model that computes the same thing."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfprune._base import keras_internals
from tfprune._base.channel_rules import last_dim as _last_dim
from tfprune._base.channels import data_tensors
from tfprune._base.channels import graph_nodes
from tfprune._base.channels import graph_view as _graph_view
from tfprune._base.graph import clone_model
from tfprune._base.graph import is_graph_model
from tfprune._base.validation import received
from tfprune._shrink._graph import LayerPlan
from tfprune._shrink._graph import UnitGraph
from tfprune._shrink._report import ShrinkReport
from tfprune._shrink._surgery import surgery_for
from tfprune._shrink._surgery import weight_keys
from tfprune._training.strip import strip
from tfprune._training.wrapper import PruningWrapper
from tfprune._training.wrapper import find_wrappers

_TOLERANCE = 1e-5


def shrink(model: keras.Model, *, return_report: bool = False):
    """Physically removes the dead units of a model.

    A unit is dead when its output does not depend on the data: a Dense unit
    or Conv filter whose kernel column is zero, a recurrent hidden unit whose
    state stays zero, an Embedding dimension that is the same for every
    token. The unit is removed together with the weights that read it
    downstream; when it outputs a non-zero constant (`activation(bias)`), the
    constant is folded into the bias of the layers that read it, and where it
    cannot be folded exactly the unit is kept. A Dense/Conv/Embedding unit
    that nothing reads (every weight reading it is zero) goes too. Units of
    the output layers and input features are never removed, and layers
    shrink does not know keep every unit they touch. See docs/shrink.md for
    the rules.

    The result is checked against `model` on a random batch: its predictions
    differ by at most `1e-5` (relative to the largest output if that is
    above 1), otherwise `shrink` raises rather than return a different
    model.

    Args:
        model: a built Sequential or Functional model, plain or pruned (a
            pruned model is stripped first with `tfprune.strip`, which only
            bakes its masks into its weights). Its layers and weights are
            left as they are.
        return_report: if True, also return a `ShrinkReport` with the units
            and parameters of each layer before and after. Defaults to False.

    Returns:
        A new plain Keras model of the same class, inputs and outputs, or
        `(model, report)` when `return_report` is True.

    Raises:
        TypeError: if `model` is not a Keras model or `return_report` is not
            a bool.
        ValueError: if `model` is subclassed or not built, or if the shrunk
            model does not reproduce its predictions.

    Example:

    ```python
    final = tfprune.strip(pruned)
    small, report = tfprune.shrink(final, return_report=True)
    print(report)
    small.save("small.keras")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a Keras model (Sequential or Functional). "
            f"{received('model', model)}"
        )
    if not isinstance(return_report, bool):
        raise TypeError(
            f"`return_report` must be a bool. {received('return_report', return_report)}"
        )
    if not is_graph_model(model):
        raise ValueError(
            f"shrink needs a Sequential or Functional model; '{model.name}' is "
            f"a subclassed model ({type(model).__name__}) whose graph tfprune "
            "cannot see, so removing units could change what it computes. "
            "Build it with the Functional API (`keras.Model(inputs, outputs)`) "
            "and copy the weights over. "
            f"Received: model={model.name}"
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "`model` must be built with known inputs before it can be shrunk: "
            "give it an `Input` or call `model.build(input_shape)`. "
            f"Received: model={model.name} (not built)"
        )
    plain = strip(model) if find_wrappers(model) else model
    new, report = _shrink_graph(plain)
    return (new, report) if return_report else new


# --------------------------------------------------------------- analysis
def _fallback(layer, node, inputs, graph):
    """What happens at a call shrink cannot follow: everything is kept."""
    graph.opaque.add(id(layer))
    for x in inputs:
        graph.pin(x)
    return [graph.fresh(_last_dim(t)) for t in node.outputs]


def analyze(model) -> UnitGraph:
    """Runs the channel analysis over the graph of `model`."""
    view = _graph_view(model)
    graph = UnitGraph()
    channels = {}
    for x in view.inputs:
        channels[id(x)] = graph.fresh(_last_dim(x))
    for node in graph_nodes(view):
        layer = node.operation
        inputs = [channels.get(id(t)) for t in data_tensors(node)]
        graph.current = id(layer)
        outputs = None
        if not isinstance(layer, PruningWrapper):
            outputs = surgery_for(layer).analyze(layer, node, inputs, graph)
        if outputs is None or len(outputs) != len(node.outputs) or any(
            ch is not None and len(ch) != _last_dim(t) for ch, t in zip(outputs, node.outputs)
        ):
            outputs = _fallback(layer, node, inputs, graph)
        for tensor, ch in zip(node.outputs, outputs):
            channels[id(tensor)] = ch
            graph.track(ch)
    for x in view.outputs:
        graph.pin(channels.get(id(x)))
    graph.finalize()
    return graph


# ---------------------------------------------------------------- rebuild
def _copy(layer):
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception:  # no usable config: the layer is shared, unchanged
        warnings.warn(
            f"tfprune.shrink: layer '{layer.name}' ({type(layer).__name__}) "
            "could not be re-created from its config; the shrunk model shares "
            "it with the input model. Implement `get_config()` to avoid this.",
            UserWarning,
            stacklevel=4,
        )
        return layer


def _assign(new, arrays: dict) -> None:
    keys = weight_keys(new)
    for variable in new.weights:
        key = keys.get(id(variable), variable.name)
        if key not in arrays or tuple(arrays[key].shape) != tuple(variable.shape):
            raise RuntimeError(
                f"tfprune.shrink: no value of shape {tuple(variable.shape)} for "
                f"'{variable.path}' of the rebuilt layer '{new.name}'; this is "
                "a bug in tfprune, please report it."
            )
        variable.assign(arrays[key])


def _rebuild(model, graph: UnitGraph):
    done = []  # (old, new, arrays or "copy" or None)

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a stateless operation (e.g. `keras.ops.add`)
        if is_graph_model(layer):
            new, _ = _shrink_graph(layer)
            done.append((layer, new, None))
            return new
        rebuilt = surgery_for(layer).rebuild(layer, LayerPlan(graph, id(layer)))
        if rebuilt is None:
            new = _copy(layer)
            done.append((layer, new, "copy"))
            return new
        done.append((layer, rebuilt.layer, rebuilt.arrays))
        return rebuilt.layer

    new_model = clone_model(model, clone_function=clone)
    for old, new, arrays in done:
        if new is old or arrays is None:
            continue
        if arrays == "copy":
            new.set_weights(old.get_weights())
        else:
            _assign(new, arrays)
    return new_model, {id(old): new for old, new, _ in done}


# ----------------------------------------------------------- verification
def _random_inputs(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    view = _graph_view(model)
    struct = keras_internals.inputs_struct(view, view.inputs)
    tensors = keras.tree.flatten(struct)
    arrays = []
    for x in tensors:
        shape = [d if d is not None else (2 if i == 0 else 12) for i, d in enumerate(x.shape)]
        if "int" in str(x.dtype):
            high = min(
                [
                    node.operation.input_dim
                    for nodes in keras_internals.nodes_by_depth(view).values()
                    for node in nodes
                    if isinstance(node.operation, keras.layers.Embedding)
                    and any(t is x for t in node.input_tensors)
                ]
                or [2]
            )
            arrays.append(rng.integers(0, high, size=shape).astype(x.dtype))
        elif "bool" in str(x.dtype):
            arrays.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            arrays.append(rng.normal(size=shape).astype(x.dtype))
    return keras.tree.pack_sequence_as(struct, arrays)


def _max_error(a, b):
    """Largest difference between two output structures (NaN == NaN), and scale."""
    ref = [np.asarray(keras.ops.convert_to_numpy(t), "float64") for t in keras.tree.flatten(a)]
    out = [np.asarray(keras.ops.convert_to_numpy(t), "float64") for t in keras.tree.flatten(b)]
    if [r.shape for r in ref] != [o.shape for o in out]:
        return np.inf, 1.0
    err = 0.0
    for r, o in zip(ref, out):
        with np.errstate(invalid="ignore"):
            diff = np.where((r == o) | (np.isnan(r) & np.isnan(o)), 0.0, np.abs(r - o))
        err = max(err, float(np.max(diff, initial=0.0)))  # NaN if only one is NaN
    finite = [np.abs(r[np.isfinite(r)]) for r in ref]
    scale = max([1.0] + [float(np.max(f, initial=0.0)) for f in finite])
    return err, scale


def _verify(model, new_model, mapping) -> float:
    """Raises unless `new_model` predicts what `model` does on a random batch."""
    data = _random_inputs(model)
    err, scale = _max_error(model(data, training=False), new_model(data, training=False))
    if not err <= _TOLERANCE * scale:
        changed = [
            layer.name
            for layer in model.layers
            if layer.count_params() != mapping.get(id(layer), layer).count_params()
        ]
        raise ValueError(
            f"shrink could not keep model '{model.name}' equivalent: the shrunk "
            f"model's predictions differ by {err:.3g} on a random batch (allowed "
            f"{_TOLERANCE * scale:.3g}); changed layers: {changed}. This is a bug "
            "in tfprune, please report it with the model. "
            f"Received: model={model.name}"
        )
    return err


def _units(graph: UnitGraph, layer):
    masks = [~graph.removed(ids) for (owner, _), ids in graph.units.items() if owner == id(layer)]
    if not masks:
        return None, None
    return sum(len(m) for m in masks), sum(int(m.sum()) for m in masks)


def _report(model, new_model, graph, mapping, err) -> ShrinkReport:
    rows = []
    for layer in model.layers:
        before, after = _units(graph, layer)
        if before is None and not layer.weights:
            continue
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "units_before": before,
                "units_after": after,
                "params_before": layer.count_params(),
                "params_after": mapping.get(id(layer), layer).count_params(),
            }
        )
    return ShrinkReport(model.name, rows, model.count_params(), new_model.count_params(), err)


def _shrink_graph(model):
    graph = analyze(model)
    new_model, mapping = _rebuild(model, graph)
    err = _verify(model, new_model, mapping)
    return new_model, _report(model, new_model, graph, mapping, err)
