"""Surgery for SimpleRNN, LSTM, GRU and Bidirectional layers.

A hidden unit j is dead when its state stays exactly zero from the zero
initial state, for any input sequence. That is the case when the
pre-activation of its *candidate* (the block that writes new content into
the state) is always zero and `activation(0) == 0`:

- SimpleRNN: `h_j = act(x W_j + h U_j + b_j) = act(0) = 0`.
- LSTM (blocks i, f, c, o): `c_j = f c_j + i act(0) = f c_j`, which stays 0
  from `c_0 = 0`; then `h_j = o act(c_j) = 0`, whatever i, f and o are.
- GRU (blocks z, r, h; `reset_after` or not, bias of shape `(3u,)` or
  `(2, 3u)`): `hh_j = act(x W_h + r (h U_h + b_rh)) = act(0) = 0` and
  `h_j = z h_j + (1 - z) hh_j` stays 0 from `h_0 = 0`.

The candidate pre-activation is zero when its kernel column is zero on every
data-dependent input (or the input is a zero constant), its biases (input
and, for GRU `reset_after`, recurrent) are zero, and its recurrent column is
zero on every unit that is not dead itself (a greatest fixed point). A
removed unit takes its columns in every gate block and its row of the
recurrent kernel with it. Removed input rows that carry a constant are
folded into the input bias. Layers given an initial state, or stateful
layers, keep all their units.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune._base import channel_rules
from tfprune._shrink._graph import concat
from tfprune._shrink._surgery import Rebuilt
from tfprune._shrink._surgery import Surgery
from tfprune._shrink._surgery import apply_elementwise
from tfprune._shrink._surgery import extend
from tfprune._shrink._surgery import rel_path
from tfprune._shrink._surgery import sibling
from tfprune._shrink._surgery import to_numpy

# cell class -> (gate blocks, index of the candidate block), for the layers
# the rules follow (`channel_rules.followed_recurrent`)
_CELLS = {
    keras.layers.LSTMCell: (4, 2),
    keras.layers.GRUCell: (3, 2),
    keras.layers.SimpleRNNCell: (1, 0),
}


def _cell_blocks(rnn):
    return _CELLS[type(rnn.cell)]


def _unread(rnn) -> np.ndarray:
    """Input rows whose kernel weights are zero in every gate."""
    return ~np.any(to_numpy(rnn.cell.kernel) != 0, axis=1)


def dead_units(rnn, vals: np.ndarray) -> np.ndarray:
    """Boolean mask of the hidden units of `rnn` whose state is always zero."""
    cell = rnn.cell
    gates, candidate = _cell_blocks(rnn)
    units = cell.units
    if apply_elementwise(cell.activation, np.zeros(1))[0] != 0:
        return np.zeros(units, dtype=bool)
    cols = slice(candidate * units, (candidate + 1) * units)
    kernel = to_numpy(cell.kernel)[:, cols]
    recurrent = to_numpy(cell.recurrent_kernel)[:, cols]
    live = np.isnan(vals)
    reaches = (kernel != 0) & (live | (vals != 0))[:, None]
    dead = ~np.any(reaches, axis=0)
    if cell.use_bias:
        bias = to_numpy(cell.bias)
        for row in bias.reshape(-1, bias.shape[-1]):  # GRU reset_after: 2 rows
            dead &= row[cols] == 0
    while True:
        still = dead & ~np.any(recurrent[~dead] != 0, axis=0)
        if (still == dead).all():
            return dead
        dead = still


def shrink_rnn(rnn, keep_in, fold, keep_units):
    """`(config, arrays)` of `rnn` with fewer inputs and hidden units."""
    cell = rnn.cell
    gates, _ = _cell_blocks(rnn)
    units = cell.units
    cols = np.concatenate([np.flatnonzero(keep_units) + g * units for g in range(gates)])
    kernel = to_numpy(cell.kernel)
    delta = fold @ kernel.astype("float64")
    use_bias = bool(cell.use_bias or np.any(delta != 0))
    kernel_key = rel_path(cell.kernel, rnn)
    arrays = {
        kernel_key: kernel[keep_in][:, cols],
        rel_path(cell.recurrent_kernel, rnn): to_numpy(cell.recurrent_kernel)[keep_units][:, cols],
    }
    if use_bias:
        if cell.use_bias:
            bias, bias_key = to_numpy(cell.bias), rel_path(cell.bias, rnn)
        else:
            rows = 2 if getattr(cell, "reset_after", False) else 1
            bias = np.zeros((rows, gates * units) if rows == 2 else (gates * units,), kernel.dtype)
            bias_key = sibling(kernel_key, "bias")
        bias = bias.astype("float64")
        if bias.ndim == 2:
            bias[0] += delta
        else:
            bias += delta
        arrays[bias_key] = bias[..., cols].astype(kernel.dtype)
    config = rnn.get_config()
    config["units"] = int(keep_units.sum())
    config["use_bias"] = use_bias
    return config, arrays


class Recurrent(Surgery):
    """SimpleRNN, LSTM and GRU layers."""

    rule = channel_rules.RECURRENT

    def values(self, layer, node, inputs, outputs, graph):
        x = inputs[0]
        graph.consume("kernel", x, unread=_unread(layer))
        dead = dead_units(layer, x.vals)
        units = graph.layer_units("units", np.where(dead, 0.0, np.nan))
        return [units] * len(node.outputs)

    def rebuild(self, layer, plan):
        rows, keep = plan.rows("kernel"), plan.units("units")
        if rows is None or keep is None or (rows[0].all() and keep.all() and not rows[1].any()):
            return None
        config, arrays = shrink_rnn(layer, rows[0], rows[1], keep)
        return Rebuilt(type(layer).from_config(config), arrays)


class Bidirectional(Surgery):
    """Bidirectional: unit j goes when it is dead in both directions."""

    rule = channel_rules.BIDIRECTIONAL

    def values(self, layer, node, inputs, outputs, graph):
        fwd, bwd = layer.forward_layer, layer.backward_layer
        x = inputs[0]
        parts = []
        for name, rnn in (("forward", fwd), ("backward", bwd)):
            graph.consume(f"{name}/kernel", x, unread=_unread(rnn))
            dead = dead_units(rnn, x.vals)
            parts.append(graph.layer_units(f"{name}/units", np.where(dead, 0.0, np.nan)))
        f, b = parts
        graph.union(f.ids, b.ids)  # one decision per unit: both directions keep the same
        mode = layer.merge_mode
        if mode is None:
            return [f, b]
        if mode == "concat":
            return [concat([f, b])]
        merged = {"sum": f.vals + b.vals, "ave": (f.vals + b.vals) / 2, "mul": f.vals * b.vals}
        return [f.with_vals(merged[mode])]

    def rebuild(self, layer, plan):
        config = layer.get_config()
        arrays, changed = {}, False
        for name, rnn, key in (
            ("forward", layer.forward_layer, "layer"),
            ("backward", layer.backward_layer, "backward_layer"),
        ):
            rows, keep = plan.rows(f"{name}/kernel"), plan.units(f"{name}/units")
            if rows is None or keep is None or key not in config:
                return None
            changed |= not (rows[0].all() and keep.all() and not rows[1].any())
            sub_config, sub_arrays = shrink_rnn(rnn, rows[0], rows[1], keep)
            config[key]["config"].update(sub_config)
            config[key].pop("build_config", None)  # built again on the new inputs
            arrays.update({f"{rnn.name}/{k}": v for k, v in sub_arrays.items()})
        if not changed:
            return None
        return Rebuilt(type(layer).from_config(config), arrays)


extend(Recurrent())
extend(Bidirectional())
