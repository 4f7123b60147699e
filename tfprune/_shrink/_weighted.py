"""Surgery for layers with weights: Dense, Conv, DepthwiseConv, Embedding, TimeDistributed.

A unit is constant when every weight that connects it to a data-dependent
input is zero; its value is `activation(bias + sum of constant inputs x
weights)`, computed by calling the activation (elementwise activations only).
A removed input row that holds a constant is folded into the consumer's bias
(`value x weights`, a bias is added if the layer had none): always exact for
Dense, for a convolution only when no padding reaches the kernel ("valid"
padding or a 1-sized kernel); otherwise the constant rows fold into one of
them that stays (the carrier, see `_graph`). A row whose
weights are all zero is not read at all and can go whatever it holds; a unit
that no consumer reads can go too (unless its activation mixes units).

A depthwise convolution (`depth_multiplier=1`) has no units of its own: its
channel `c` reads only input channel `c`, so both are one channel, removed
together with their kernel slice and bias entry. Its output is constant
when its kernel slice is zero (the bias) or its input is a constant that no
padding reaches (or a zero constant).
"""

from __future__ import annotations

import numpy as np

from tfprune._base import channel_rules
from tfprune._base.channel_rules import is_elementwise
from tfprune._shrink._surgery import Rebuilt
from tfprune._shrink._surgery import Surgery
from tfprune._shrink._surgery import apply_elementwise
from tfprune._shrink._surgery import compute_dtype
from tfprune._shrink._surgery import extend
from tfprune._shrink._surgery import rel_path
from tfprune._shrink._surgery import sibling
from tfprune._shrink._surgery import surgery_for
from tfprune._shrink._surgery import to_numpy


def unit_values(nonzero, w_sum, bias, vals, fold_ok, activation, dtype) -> np.ndarray:
    """Constant value of each output unit, NaN where it depends on the data.

    Args:
        nonzero: (inputs, units) bool, whether input i reaches unit j.
        w_sum: (inputs, units) total weight from input i to unit j.
        bias: (units,) bias.
        vals: (inputs,) constant input values, NaN for data.
        fold_ok: whether a constant input contributes a constant everywhere.
        activation: the layer's activation.
        dtype: the dtype the activation runs in.
    """
    live = np.isnan(vals)
    if not fold_ok:
        live |= vals != 0
    const = ~np.any(nonzero[live], axis=0)
    if not is_elementwise(activation) or not const.any():
        return np.full(len(bias), np.nan)
    pre = bias + np.where(live, 0.0, vals) @ w_sum
    return np.where(const, apply_elementwise(activation, pre, dtype), np.nan)


def _per_input(kernel):
    """`(nonzero, total)`: (inputs, units) views of a Dense or Conv kernel.

    `nonzero[i, j]`: whether input channel i reaches unit j at all;
    `total[i, j]`: the sum of the weights from i to j over the kernel window.
    """
    spatial = tuple(range(kernel.ndim - 2))
    if not spatial:
        return kernel != 0, kernel
    return np.any(kernel != 0, axis=spatial), kernel.sum(axis=spatial)


class Dense(Surgery):
    """Dense; the base of Conv (kernel `(*window, inputs, units)`)."""

    rule = channel_rules.DENSE
    size_key = "units"

    def fold_ok(self, layer) -> bool:
        return True

    def values(self, layer, node, inputs, outputs, graph):
        x = inputs[0]
        kernel = to_numpy(layer.kernel).astype("float64")
        nonzero, total = _per_input(kernel)
        units = kernel.shape[-1]
        bias = to_numpy(layer.bias).astype("float64") if layer.use_bias else np.zeros(units)
        fold_ok = self.fold_ok(layer)
        graph.consume("kernel", x, fold_ok=fold_ok, unread=~np.any(nonzero, axis=1),
                      carrier=kernel.ndim > 2)
        vals = unit_values(
            nonzero, total, bias, x.vals, fold_ok, layer.activation, compute_dtype(layer)
        )
        # A unit nothing reads can go too, unless the activation mixes units
        # (softmax): then removing one changes the others.
        elementwise = is_elementwise(layer.activation)
        return [graph.layer_units("units", vals, pin_live=not elementwise)]

    def rebuild(self, layer, plan):
        rows, keep_out = plan.rows("kernel"), plan.units("units")
        if rows is None or keep_out is None:
            return None
        keep_in, fold = rows
        if keep_in.all() and keep_out.all() and not fold.any():
            return None
        kernel = to_numpy(layer.kernel)
        carrier = plan.carrier("kernel")
        if carrier is not None:  # the border sees zeros: fold into a constant row
            index, value = carrier
            wide = kernel.astype("float64")
            wide[..., index, :] += np.tensordot(fold / value, wide, axes=([0], [wide.ndim - 2]))
            kernel, fold = wide.astype(kernel.dtype), np.zeros_like(fold)
        delta = fold @ _per_input(kernel.astype("float64"))[1]
        use_bias = bool(layer.use_bias or np.any(delta != 0))
        config = layer.get_config()
        config[self.size_key] = int(keep_out.sum())
        config["use_bias"] = use_bias
        key = rel_path(layer.kernel, layer)
        arrays = {key: kernel[..., keep_in, :][..., keep_out]}
        if use_bias:
            if layer.use_bias:
                bias, bias_key = to_numpy(layer.bias), rel_path(layer.bias, layer)
            else:
                bias, bias_key = np.zeros(kernel.shape[-1], kernel.dtype), sibling(key, "bias")
            arrays[bias_key] = (bias + delta).astype(bias.dtype)[keep_out]
        return Rebuilt(type(layer).from_config(config), arrays)


class Conv(Dense):
    """Conv1D/2D/3D, channels last, no groups."""

    rule = channel_rules.CONV
    size_key = "filters"

    def fold_ok(self, layer) -> bool:
        return layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)


class Depthwise(Surgery):
    """DepthwiseConv1D/2D, channels last, `depth_multiplier=1`: channel in = channel out."""

    rule = channel_rules.DEPTHWISE

    def values(self, layer, node, inputs, outputs, graph):
        (x,) = outputs  # the rule recorded the channels it reads
        kernel = to_numpy(layer.kernel).astype("float64")[..., 0]  # (*window, channels)
        window = tuple(range(kernel.ndim - 1))
        reads = np.any(kernel != 0, axis=window)
        bias = to_numpy(layer.bias).astype("float64") if layer.use_bias else np.zeros(len(x))
        fold_ok = layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)
        known = ~np.isnan(x.vals) & (fold_ok | (x.vals == 0))
        with np.errstate(invalid="ignore"):
            pre = np.where(known, x.vals * kernel.sum(axis=window), np.nan) + bias
        pre = np.where(reads, pre, bias)
        return [x.with_vals(apply_elementwise(layer.activation, pre, compute_dtype(layer)))]

    def rebuild(self, layer, plan):
        rows = plan.rows("channels")
        if rows is None or rows[0].all():
            return None
        keep = rows[0]
        arrays = {rel_path(layer.kernel, layer): to_numpy(layer.kernel)[..., keep, :]}
        if layer.use_bias:
            arrays[rel_path(layer.bias, layer)] = to_numpy(layer.bias)[keep]
        return Rebuilt(type(layer).from_config(layer.get_config()), arrays)


class Embedding(Surgery):
    """Embedding: a dimension whose column holds one value everywhere is constant."""

    rule = channel_rules.EMBEDDING

    def values(self, layer, node, inputs, outputs, graph):
        table = to_numpy(layer.embeddings).astype("float64")
        same = np.all(table == table[:1], axis=0)
        vals = np.where(same, table[0], np.nan)
        return [graph.layer_units("units", vals, pin_live=False)]

    def rebuild(self, layer, plan):
        keep = plan.units("units")
        if keep is None or keep.all():
            return None
        config = layer.get_config()
        config["output_dim"] = int(keep.sum())
        table = layer.embeddings
        arrays = {rel_path(table, layer): to_numpy(table)[:, keep]}
        return Rebuilt(type(layer).from_config(config), arrays)


class TimeDistributed(Surgery):
    """TimeDistributed(Dense or Conv): the inner layer acts on the last axis."""

    rule = channel_rules.TIME_DISTRIBUTED

    def _inner(self, layer):
        inner = surgery_for(layer.layer)
        return inner if isinstance(inner, Dense) else None

    def values(self, layer, node, inputs, outputs, graph):
        inner = self._inner(layer)
        return None if inner is None else inner.values(layer.layer, node, inputs, outputs, graph)

    def rebuild(self, layer, plan):
        inner = self._inner(layer)
        rebuilt = None if inner is None else inner.rebuild(layer.layer, plan)
        if rebuilt is None:
            return None
        config = layer.get_config()
        config.pop("layer")
        prefix = layer.layer.name
        arrays = {f"{prefix}/{k}": v for k, v in rebuilt.arrays.items()}
        return Rebuilt(type(layer)(rebuilt.layer, **config), arrays)


for _surgery in (Dense(), Conv(), Depthwise(), Embedding(), TimeDistributed()):
    extend(_surgery)
