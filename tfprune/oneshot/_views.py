"""Each prunable kernel seen as a matrix `(inputs, outputs)`, with its inputs.

A one-shot method needs, for a kernel `W`, the matrix form of the layer,
`Y = X W2` with `X` a `(tokens, inputs)` matrix of the layer's inputs and
`W2` a `(inputs, outputs)` matrix holding `W`'s entries. `View` gives both:
`to_2d` / `from_2d` move between the kernel and `W2`, and `inputs` turns one
call of the layer (as a hook on its `call` sees it) into rows of `X`.

Supported:
- `Dense`: the kernel itself; `X` is the input with its leading axes merged.
- `EinsumDense` (attention and feed-forward projections of keras_hub
  models): the contracted axes of the kernel become the inputs, the others
  the outputs, from the layer's equation.
- `Conv1D`/`Conv2D`/`Conv3D` (`groups=1`): `(k..., c_in)` patches of the
  input are the rows of `X`, taken as the layer's padding, strides and
  dilation take them (im2col), in batches of bounded size.
- recurrent cells (`LSTM`, `GRU`, `SimpleRNN` layers): the kernel sees the
  input sequence; the recurrent kernel sees the hidden state of the step
  before, `h(t-1)` (recomputed as the layer's output sequence, in the
  order the layer runs). A GRU with `reset_after=False` multiplies its
  candidate block by `r * h(t-1)`, which is not that: its recurrent kernel
  is skipped, as are stateful layers' (their first state is not zero).

Anything else (embeddings, depthwise, separable and transposed
convolutions, custom layers) has no view: data-aware methods skip it and
say why (`view_of` returns the reason).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math

import keras
from keras import ops

from tfprune._base import walk

__all__ = ["View", "view_of", "tensor_view"]

#: Rows of patches built at once for a convolution (x input features).
_PATCH_ELEMENTS = 1 << 24


def _first_argument(call, args, kwargs):
    if args:
        return args[0]
    name = next(iter(inspect.signature(call).parameters))
    return kwargs[name]


@dataclasses.dataclass(eq=False)
class View:
    """How one kernel is a matrix, and where its input rows come from.

    Attributes:
        layer: the layer whose calls carry the inputs (for a recurrent cell,
            the RNN layer running it); its `call` is hooked.
        kind: "dense", "einsum", "conv", "rnn_input" or "rnn_state".
        features: inputs (rows of `W2`).
        units: outputs (columns of `W2`).
        gates: gate blocks along the outputs (LSTM 4, GRU 3, else 1).
        perm: for "einsum", the kernel axes in `W2` order (inputs first).
    """

    layer: object
    kind: str
    features: int
    units: int
    gates: int = 1
    shape: tuple = ()
    perm: tuple = ()
    in_perm: object = None

    def to_2d(self, kernel):
        """`W2`, `(features, units)` float32, from the kernel."""
        x = ops.cast(ops.convert_to_tensor(kernel), "float32")
        if self.perm:
            x = ops.transpose(x, self.perm)
        return ops.reshape(x, (self.features, self.units))

    def from_2d(self, matrix):
        """The kernel-shaped tensor holding `matrix`'s entries."""
        if not self.perm:
            return ops.reshape(matrix, self.shape)
        moved = tuple(self.shape[a] for a in self.perm)
        x = ops.reshape(matrix, moved)
        inverse = [self.perm.index(a) for a in range(len(self.perm))]
        return ops.transpose(x, inverse)

    def inputs(self, args, kwargs, outputs, call):
        """Rows of `X` (float32 `(tokens, features)` tensors) from one call."""
        if self.kind == "rnn_state":
            yield from _previous_states(self.layer, args, kwargs, call, self.features)
            return
        x = ops.cast(_first_argument(call, args, kwargs), "float32")
        if self.kind == "conv":
            yield from _patches(x, self.layer)
        elif self.kind == "einsum":
            yield _einsum_rows(x, self.in_perm, self.features)
        else:
            yield ops.reshape(x, (-1, self.features))


# ------------------------------------------------------------------ einsum
def _einsum_parts(equation: str):
    """`(input labels, kernel labels, output labels)`; "..." becomes "."."""
    lhs, out = equation.replace("...", ".").split("->")
    inp, ker = lhs.split(",")
    return inp, ker, out


def _einsum_view(layer, pw):
    inp, ker, out = _einsum_parts(layer.equation)
    if "." in ker:
        return "its equation broadcasts the kernel"
    shared = [c for c in ker if c in inp and c in out]
    contracted = [c for c in ker if c in inp and c not in out]
    free = [c for c in ker if c not in inp]
    if shared or not contracted or not free:
        return (f"its equation '{layer.equation}' is not a matrix product of the input "
                "and the kernel")
    shape = tuple(int(d) for d in pw.variable.shape)
    perm = tuple(ker.index(c) for c in contracted + free)
    features = math.prod(shape[ker.index(c)] for c in contracted)
    units = math.prod(shape[ker.index(c)] for c in free)
    return View(layer, "einsum", features, units, shape=shape, perm=perm,
                in_perm=(inp, tuple(contracted)))


def _einsum_rows(x, in_perm, features):
    inp, contracted = in_perm
    rank = len(x.shape)
    labels = []
    for c in inp:
        labels += [None] * (rank - len(inp) + 1) if c == "." else [c]
    last = [labels.index(c) for c in contracted]
    order = [i for i in range(rank) if i not in last] + last
    return ops.reshape(ops.transpose(x, order), (-1, features))


# -------------------------------------------------------------------- conv
def _conv_view(layer, pw):
    if getattr(layer, "groups", 1) != 1:
        return f"a grouped convolution (groups={layer.groups})"
    shape = tuple(int(d) for d in pw.variable.shape)
    return View(layer, "conv", math.prod(shape[:-1]), shape[-1], shape=shape)


def _padding(size, kernel, stride, dilation, padding):
    """`(before, after, outputs)` along one spatial axis, as Keras pads."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0, 0, (size - span) // stride + 1
    if padding == "causal":
        return span - 1, 0, (size - 1) // stride + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2, out


def _patches(x, layer):
    """im2col rows `(positions, k... * c_in)` of a channels-last input."""
    rank = len(layer.kernel_size)
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        x = ops.moveaxis(x, 1, -1)
    geometry = [
        _padding(int(x.shape[1 + a]), layer.kernel_size[a], layer.strides[a],
                 layer.dilation_rate[a], layer.padding)
        for a in range(rank)
    ]
    pads = [(0, 0)] + [(b, e) for b, e, _ in geometry] + [(0, 0)]
    x = ops.pad(x, pads)
    outs = [o for _, _, o in geometry]
    width = math.prod(layer.kernel_size) * int(x.shape[-1])
    per_sample = math.prod(outs) * width
    step = max(1, _PATCH_ELEMENTS // max(per_sample, 1))
    for start in range(0, int(x.shape[0]), step):
        chunk = x[start:start + step]
        pieces = []
        for offset in itertools.product(*[range(k) for k in layer.kernel_size]):
            index = [slice(None)]
            for a in range(rank):
                first = offset[a] * layer.dilation_rate[a]
                stride = layer.strides[a]
                index.append(slice(first, first + (outs[a] - 1) * stride + 1, stride))
            pieces.append(chunk[tuple(index)])
        yield ops.reshape(ops.stack(pieces, axis=-2), (-1, width))


# --------------------------------------------------------------- recurrent
def _rnn_of(cell, root):
    for _, _, layer in walk.walk(root):
        if isinstance(layer, keras.layers.RNN) and layer.cell is cell:
            return layer
    return None


def _rnn_view(pw, root):
    cell = pw.layer
    rnn = _rnn_of(cell, root)
    if rnn is None:
        return "a recurrent cell not run by an RNN layer of the model"
    shape = tuple(int(d) for d in pw.variable.shape)
    if pw.variable.name == "kernel":
        return View(rnn, "rnn_input", shape[0], shape[1], pw.gates, shape=shape)
    if getattr(rnn, "stateful", False):
        return "the recurrent kernel of a stateful layer (its first state is not zero)"
    if isinstance(cell, keras.layers.GRUCell) and not cell.reset_after:
        return ("the recurrent kernel of a GRU with reset_after=False (its candidate "
                "block multiplies r * h(t-1), not h(t-1))")
    return View(rnn, "rnn_state", shape[0], shape[1], pw.gates, shape=shape)


def _previous_states(rnn, args, kwargs, call, features):
    """`h(t-1)` for every step after the first (the first state is zero and
    adds nothing), in the order the layer runs."""
    saved = rnn.return_sequences, rnn.return_state
    rnn.return_sequences, rnn.return_state = True, False
    try:
        sequence = call(*args, **kwargs)
    finally:
        rnn.return_sequences, rnn.return_state = saved
    sequence = ops.cast(sequence, "float32")
    yield ops.reshape(sequence[:, :-1], (-1, features))


_CELLS = tuple(getattr(keras.layers, n) for n in ("LSTMCell", "GRUCell", "SimpleRNNCell"))
_CONVS = tuple(getattr(keras.layers, n) for n in ("Conv1D", "Conv2D", "Conv3D"))
_NOT_CONVS = tuple(
    getattr(keras.layers, n)
    for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
    if hasattr(keras.layers, n)
)


def view_of(pw, root):
    """The `View` of a `PrunableWeight` of `root`, or why it has none (str)."""
    layer = pw.layer
    if isinstance(layer, _CELLS) and pw.variable.name in ("kernel", "recurrent_kernel"):
        return _rnn_view(pw, root)
    if pw.variable.name != "kernel":
        return f"'{pw.variable.name}' is not a kernel applied to the layer's input"
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_view(layer, pw)
    if isinstance(layer, keras.layers.Dense):
        shape = tuple(int(d) for d in pw.variable.shape)
        return View(layer, "dense", shape[0], shape[1], shape=shape)
    if isinstance(layer, _CONVS) and not isinstance(layer, _NOT_CONVS):
        return _conv_view(layer, pw)
    return f"{type(layer).__name__} is not a Dense, EinsumDense, Conv or recurrent layer"


def tensor_view(pw):
    """A view of any prunable tensor as `(leading axes, last axis)`, with no
    inputs: for `Magnitude`, which needs no data."""
    shape = tuple(int(d) for d in pw.variable.shape)
    return View(pw.layer, "tensor", math.prod(shape[:-1]), shape[-1], pw.gates, shape=shape)
