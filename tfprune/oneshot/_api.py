"""`tfprune.prune_oneshot`: prune a trained model from calibration data."""

from __future__ import annotations

import glob
import math
import re
import time

import keras
import numpy as np

from tfprune import schedules as schedules_lib
from tfprune._base import walk
from tfprune._base.graph import check_model
from tfprune._base.validation import received
from tfprune._masks.core import apply_mask
from tfprune._training.prune import prune
from tfprune._training.prune import selected_weights
from tfprune._training.wrapper import find_wrappers
from tfprune.oneshot import _methods
from tfprune.oneshot._data import calibration_batches
from tfprune.oneshot._data import flat_inputs
from tfprune.oneshot._data import samples_in
from tfprune.oneshot._engine import Target
from tfprune.oneshot._engine import calibrate
from tfprune.oneshot._graph import Program
from tfprune.oneshot._report import OneShotReport
from tfprune.oneshot._views import tensor_view
from tfprune.oneshot._views import view_of
from tfprune.strategies import Strategy
from tfprune.strategies._structure import io_layers

__all__ = ["prune_oneshot"]

#: Class-name pattern of the layers `protect_embeddings` keeps dense
#: (Embedding, ReversibleEmbedding, PositionEmbedding, ...).
EMBEDDINGS = "*Embedding"


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'. {received('verbose', verbose)}")
    return verbose


def _selection(layers, filters):
    """`layers` for `prune`, from `layers` or Keras-style `filters`."""
    if filters is None:
        return layers
    if layers is not None:
        raise ValueError(
            "Pass `layers` or `filters`, not both: `filters` selects layers the way "
            f"`model.quantize` does, `layers` the way `tfprune.prune` does. "
            f"{received('filters', filters)}")
    if callable(filters):
        return [filters]
    patterns = [filters] if isinstance(filters, str) else filters
    if not isinstance(patterns, (list, tuple)) or not patterns or not all(
            isinstance(p, str) for p in patterns):
        raise TypeError(
            "`filters` must be a regular expression, a list of them, or a callable "
            f"`fn(layer) -> bool`. {received('filters', filters)}")
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as e:
        raise ValueError(
            f"`filters` holds an invalid regular expression ({e}). "
            f"{received('filters', filters)}") from None
    return [lambda layer, c=c: c.search(layer.name) is not None for c in compiled]


def _head(model) -> list:
    """Paths of the single layers (not blocks) that produce the outputs."""
    if not isinstance(model, keras.Model):
        return []
    _, outputs = io_layers(model)
    heads = []
    for layer in walk.children(model):
        if layer.name in outputs:
            owners = {id(pw.layer) for pw in walk.prunable_weights(layer)}
            if len(owners) == 1:
                heads.append(layer.name)
    return heads


def _unviewable(model, method) -> tuple:
    """`(reasons, patterns)`: why each tensor has no data view, and the
    paths of the layers none of whose tensors has one (left unwrapped)."""
    reasons, owners = {}, {}
    if method.statistic is None:
        return reasons, []
    for pw in walk.prunable_weights(model):
        view = view_of(pw, model)
        if isinstance(view, str):
            reasons[walk.relative_path(pw.name, model.name)] = f"skipped: {view}"
        path = walk.relative_path(pw.path, model.name)
        owners.setdefault(path, []).append(isinstance(view, str))
    return reasons, [glob.escape(p) for p, flags in owners.items() if all(flags)]


def _zeros(variable, mask) -> int:
    """Zeros of the (masked) value, read a slab of about a million values at
    a time: no copy of a whole tensor that may be large (a language
    model's embedding table)."""
    value = variable.value
    rows = int(value.shape[0])
    step = max(1, (1 << 20) * rows // max(math.prod(value.shape), 1))
    zeros = 0
    for start in range(0, rows, step):
        part = value[start:start + step]
        if mask is not None:
            part = apply_mask(part, mask.value[start:start + step])
        part = np.asarray(keras.ops.convert_to_numpy(part))
        zeros += int(part.size - np.count_nonzero(part))
    return zeros


def _row(name, pw, mask, target, status):
    shape = tuple(int(d) for d in pw.variable.shape)
    size = math.prod(shape)
    zeros = _zeros(pw.variable, mask)
    return {"tensor": name, "shape": list(shape), "parameters": size, "zeros": zeros,
            "sparsity": zeros / size if size else 0.0,
            "error": None if target is None else target.error,
            "status": status if target is None else target.status,
            "block": None if target is None else target.block,
            **({} if target is None else target.info)}


def prune_oneshot(model, method, data=None, *, batch_size=None, layers=None, filters=None,
                  protect=(), protect_embeddings=True, protect_outputs=True, inplace=False,
                  verbose="auto", return_report=False):
    """Prunes a trained model in one shot, from calibration data.

    Runs the model over `data` block by block (sequential calibration:
    each block of a Sequential or Functional model, a keras_hub backbone's
    transformer layers among them, is calibrated on the outputs of the
    blocks before it, already pruned), collects what the method needs from
    the inputs of each prunable layer (Wanda: the norm of each input
    feature; SparseGPT: `H = 2/N XᵀX`), and prunes the layer. Memory holds
    one block's statistics at a time. A subclassed model has no graph to
    walk: its layers are calibrated together, on the dense model.

    Data-aware methods prune kernels applied to a layer's input: Dense,
    EinsumDense (attention and feed-forward projections), Conv1D/2D/3D and
    the kernels and recurrent kernels of LSTM/GRU/SimpleRNN layers; other
    tensors are left dense and the report says why. `Magnitude` needs no
    data and prunes any prunable tensor.

    The result is the model wrapped as `tfprune.prune` wraps it (a copy for
    Sequential and Functional models, the same object for subclassed ones),
    with its masks fixed: `fit` with `tfprune.PruningCallback` fine-tunes
    it and keeps them, and `strip`, `export`, `shrink` and
    `sparsity_report` work on it. With `inplace=True` no wrapper or mask is
    added: the pruned weights of `model` itself are set to zero, which
    costs no memory beyond one block's statistics (for large models; the
    class of the model is kept, e.g. a keras_hub `CausalLM` can still
    `generate`).

    Args:
        model: a built Keras model.
        method: a `tfprune.oneshot.OneShotMethod` (`Magnitude`, `Wanda`,
            `SparseGPT`), or its name for 50% unstructured.
        data: calibration inputs, as `model.predict` takes them: an array, a
            list or dict of arrays (keras_hub models take a dict), an
            `(x, y)` tuple, a `tf.data.Dataset`, a `keras.utils.PyDataset`
            or an iterable of batches. Required except for `Magnitude`
            (with data, `Magnitude` reports layer-wise errors too).
        batch_size: samples per batch for in-memory `data`. Defaults to 32.
        layers: which layers to prune, as in `tfprune.prune`. Defaults to
            every prunable layer.
        filters: or, as in Keras' `model.quantize`: a regular expression on
            layer names, a list of them, or a callable `fn(layer) -> bool`.
        protect: glob patterns of layers never pruned (names, paths, class
            names; see `tfprune.strategies.Strategy`).
        protect_embeddings: never prune embedding layers. Defaults to True.
        protect_outputs: never prune the output head (a single layer that
            produces a model output, such as a Dense classifier or a language
            model's projection to the vocabulary). Defaults to True.
        inplace: prune `model`'s own weights, without wrappers or masks.
            Defaults to False.
        verbose: 0 (silent), 1 (a progress bar over the blocks, then the
            report), 2 (one line per block, then the report) or "auto" (1).
        return_report: also return the `tfprune.oneshot.OneShotReport`.

    Returns:
        The pruned model, or `(model, report)` with `return_report=True`.

    Raises:
        TypeError: for arguments of the wrong type.
        ValueError: if `data` is missing for a data-aware method, holds no
            sample or does not fit the model's inputs; if nothing is left to
            prune; for the errors of `tfprune.prune` (model not built or
            already pruned, unknown layer names).

    Example:

    ```python
    method = tfprune.oneshot.SparseGPT(0.5)            # or Wanda(granularity=NM(2, 4))
    pruned = tfprune.prune_oneshot(model, method, x_calibration[:128])
    pruned.compile("adam", "mse")                        # optional: fine-tune, masks kept
    pruned.fit(x, y, epochs=1, callbacks=[tfprune.PruningCallback()])
    final = tfprune.strip(pruned)
    ```
    """
    start = time.perf_counter()
    check_model(model)
    method = _methods.get(method)
    verbose = _check_verbose(verbose)
    if not isinstance(inplace, bool):
        raise TypeError(f"`inplace` must be True or False. {received('inplace', inplace)}")
    selection = _selection(layers, filters)
    batches = None if data is None else calibration_batches(data, batch_size)
    if batches is None and method.statistic is not None:
        raise ValueError(
            f"{type(method).__name__} calibrates on data: pass the inputs of a few hundred "
            "samples as `data` (only `Magnitude` needs none). Received: data=None")
    if batches is not None and Program.supports(model):
        flat_inputs(model, batches[0])  # fails now, before any copy, if it does not fit
    patterns = [protect] if isinstance(protect, str) else list(protect or ())
    reasons, unviewable = _unviewable(model, method)
    patterns += [EMBEDDINGS] * bool(protect_embeddings)
    if protect_outputs:
        patterns += [glob.escape(name) for name in _head(model)]
    asked = Strategy(granularity=method.granularity, protect=patterns)
    strategy = Strategy(granularity=method.granularity, protect=patterns + unviewable)
    if inplace and find_wrappers(model):
        raise ValueError(
            f"Model '{model.name}' is already pruned (it holds PruningWrapper layers "
            f"{[w.name for w in find_wrappers(model)]}); strip it first with `tfprune.strip`. "
            f"Received: model={model.name}")
    chosen = {walk.relative_path(pw.name, model.name)
              for pw in selected_weights(model, selection)}
    root, masks = model, {}
    if not inplace:
        root = prune(model, schedules_lib.Constant(method.target), layers=selection,
                     strategy=strategy)
        masks = {id(s.weight.variable): s.mask
                 for w in find_wrappers(root) for s in w.slots if s.counted}
    plan = asked.plan(root)
    protected = {t for g in plan.groups if g.protected for t in g.group.tensors}
    targets, entries = [], []
    for i, pw in enumerate(plan.weights):
        name = walk.relative_path(pw.name, root.name)
        target, status = None, "pruned"
        if name not in chosen:
            status = "not selected"
        elif i in protected:
            status = "protected"
        elif name in reasons:
            status = reasons[name]
        elif not inplace and id(pw.variable) not in masks:
            status = "not selected"
        else:
            view = view_of(pw, root)
            target = Target(name, pw, tensor_view(pw) if isinstance(view, str) else view,
                            masks.get(id(pw.variable)))
            targets.append(target)
        entries.append((name, pw, target, status))
    if not targets:
        left = {name: status for name, _, _, status in entries}
        raise ValueError(
            f"{type(method).__name__} has nothing to prune in model '{model.name}': "
            f"{left}. Received: method={method!r}")
    peak = calibrate(root, targets, method, batches, verbose)
    for wrapper in find_wrappers(root):
        wrapper.pruning_step.assign(0)  # done at step 0: `PruningCallback` keeps the masks
    rows = [_row(name, pw, masks.get(id(pw.variable)), target, status)
            for name, pw, target, status in entries]
    report = OneShotReport(root.name, method, rows,
                           sorted({t.block for t in targets if t.block},
                                  key=[t.block for t in targets].index),
                           0 if batches is None else sum(samples_in(b) for b in batches),
                           peak, time.perf_counter() - start)
    if verbose:
        print(report)
    return (root, report) if return_report else root
