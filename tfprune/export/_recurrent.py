"""Recurrent layers in TFLite: unroll them over a fixed number of steps.

Keras 3 RNN layers loop with a `while` over TensorLists, which the TFLite
converter only keeps as TensorFlow (Flex) ops that plain LiteRT cannot run.
Unrolled (`unroll=True`), the loop becomes a fixed chain of builtin ops
(FULLY_CONNECTED, ADD, LOGISTIC, TANH, ...), one copy per time step. That
needs the sequence length to be known when the model is traced, so it is
taken from the model's input shape.
"""

from __future__ import annotations

import contextlib

import keras

from tfprune._base import keras_internals


def recurrent_layers(model) -> list:
    """Every `keras.layers.RNN` in `model`, nested ones and those inside
    `Bidirectional` included."""
    return [
        layer
        for layer in keras_internals.flatten_layers(model)
        if isinstance(layer, keras.layers.RNN)
    ]


def check_fixed_length(model, specs, layers) -> int | None:
    """The sequence length of a recurrent model, or raises if unknown.

    Returns `None` when the model has no recurrent layer.

    Raises:
        ValueError: if an input of a recurrent model has an unknown
            dimension besides the batch.
    """
    if not layers:
        return None
    unknown = [shape for shape, _, _ in specs if any(d is None for d in shape[1:])]
    if unknown:
        names = ", ".join(f"{type(l).__name__} '{l.name}'" for l in layers[:3])
        raise ValueError(
            f"`model` has recurrent layers ({names}), which TFLite runs with builtin ops "
            "only when unrolled over a fixed number of time steps, but its input shape "
            f"{unknown[0]} leaves the sequence length unknown (None). Give the Input a "
            "fixed length, e.g. `keras.Input((50, features))` instead of "
            "`keras.Input((None, features))`, rebuild the model and copy the weights "
            f"(`new.set_weights(model.get_weights())`). Received: model={model.name} with "
            f"input shapes {[s for s, _, _ in specs]}"
        )
    lengths = [shape[1] for shape, _, _ in specs if len(shape) > 1]
    return max(lengths) if lengths else None


@contextlib.contextmanager
def unrolled(layers):
    """Sets `unroll=True` on the layers for the duration of the block.

    The layers' own setting is put back afterwards, so the model is not
    changed; a function traced inside the block keeps the unrolled graph.
    """
    saved = [(layer, layer.unroll) for layer in layers]
    try:
        for layer in layers:
            layer.unroll = True
        yield
    finally:
        for layer, value in saved:
            layer.unroll = value


def describe(layers, length) -> str:
    kinds = sorted({type(l).__name__ for l in layers})
    return (
        f"recurrent layers ({', '.join(kinds)}) unrolled over {length} time steps "
        "(fixed by the model's input shape) so that they convert to builtin ops"
    )

