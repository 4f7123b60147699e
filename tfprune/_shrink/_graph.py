"""Which units of a graph model can go: the channel dependency analysis.

Every channel (position along the last axis) of every tensor of the model
belongs to a *class*. A producer (Dense, Conv, RNN, Embedding) creates one
class per output unit; layers that pass channels through (Dropout,
BatchNormalization, pooling, Flatten) give their outputs the classes of their
inputs; merges that combine channel `i` of several tensors (Add, Multiply,
Concatenate along another axis, the sum of a Bidirectional layer) join the
classes of channel `i` into one. A class is removed everywhere or nowhere.

A class is *pinned* (kept) as soon as one of its channels:
- reaches a model output, a model input, or a layer shrink does not know;
- comes from a recurrent unit whose state depends on the data;
- is read by a layer that cannot absorb it: a non-constant channel, or a
  non-zero constant where the consumer cannot fold it into its bias. A
  consumer whose weights for the channel are all zero does not read it.

A convolution whose padding reaches its window cannot fold a constant
channel into its bias (the border sees zeros), but it can fold it into
another constant channel of the same input, which has the same zeros at the
border: one constant channel, the *carrier*, stays and the weights of the
others, scaled by the ratio of their values, are added to its weights.

Every class that is not pinned is removed. Keeping a class is always exact,
so the analysis is free to pin whenever it is unsure.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune._base.channels import ChannelUnion


@dataclasses.dataclass
class Channels:
    """What is known of the channels (last axis) of one tensor.

    Attributes:
        ids: class id of each channel (int array).
        vals: the constant value of each channel for every input of the
            model, or NaN where the channel depends on the data.
    """

    ids: np.ndarray
    vals: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def tile(self, times: int) -> "Channels":
        """The channels of a tensor whose last axis repeats these `times` times."""
        return Channels(np.tile(self.ids, times), np.tile(self.vals, times))

    def with_vals(self, vals) -> "Channels":
        return Channels(self.ids, np.asarray(vals, dtype="float64"))


def concat(parts: list) -> Channels:
    return Channels(
        np.concatenate([p.ids for p in parts]), np.concatenate([p.vals for p in parts])
    )


class UnitGraph(ChannelUnion):
    """Union-find over channel classes, with the per-layer bookkeeping.

    It is the `ChannelFlow` the channel rules (`tfprune._base.channel_rules`)
    run on, flowing `Channels`. Layers record what they consume (`rows`) and
    produce (`units`) under `(owner, key)`, where `owner` is the id of the
    layer of the model graph being analysed (set in `current`) and `key`
    names the weight, e.g. `"kernel"` or `"forward/kernel"`.
    """

    def __init__(self):
        super().__init__()
        self.current = None
        self.units: dict = {}
        self.rows: dict = {}
        self.opaque: set = set()
        self.tensors: list[Channels] = []
        self.unread: dict = {}
        self.carriers: dict = {}

    # ------------------------------------------------------------- classes
    def fresh(self, n) -> Channels | None:
        """Pinned channels for a tensor whose content shrink does not follow."""
        if not isinstance(n, int) or n <= 0:
            return None
        return Channels(self.new(n, pinned=True), np.full(n, np.nan))

    def removed(self, ids) -> np.ndarray:
        """Boolean array: which of `ids` are removed (not pinned)."""
        return ~self.pinned(ids)

    # ------------------------------------------ the `ChannelFlow` of the rules
    def tile(self, x: Channels, times: int) -> Channels:
        return x.tile(times)

    def concat(self, parts: list) -> Channels:
        return concat(parts)

    def produce(self, layer, key: str, n: int) -> Channels:
        """The output units `key` of the current layer, their values unknown
        until its surgery sets them (`layer_units`)."""
        return self.layer_units(key, np.full(n, np.nan), pin_live=False)

    def per_channel(self, layer, x: Channels) -> Channels:
        """The current layer holds a parameter per channel of `x` ("channels")."""
        self.consume("channels", x, need_const=False)
        return x

    # -------------------------------------------------------- bookkeeping
    def layer_units(self, key: str, vals, pin_live: bool = True) -> Channels:
        """The output units of the current layer, with their constant values.

        The classes are created at the first call of the layer and shared by
        its other calls. With `pin_live`, a unit that is not constant at some
        call is pinned; without it, such a unit can still go when nothing
        reads it (every consumer has zero weights for it).
        """
        vals = np.asarray(vals, dtype="float64")
        k = (self.current, key)
        if k not in self.units:
            self.units[k] = self.new(len(vals))
        ids = self.units[k]
        if pin_live:
            self.pin(ids[np.isnan(vals)])
        return Channels(ids, vals)

    def consume(self, key: str, x: Channels, fold_ok: bool = True, need_const: bool = True,
                unread=None, carrier: bool = False) -> None:
        """Records that the current layer reads the channels of `x` as `key`.

        Args:
            key: name of the weight (or parameter vector) indexed by them.
            x: the channels of the input.
            fold_ok: whether a removed constant channel can be folded into
                the layer's bias; if not, only zero channels can go.
            need_const: whether removing a row needs the channel to be
                constant (weights that mix it into other units); False for
                per-channel layers such as BatchNormalization.
            unread: optional boolean mask of the rows whose weights are all
                zero: the layer ignores them, so they can go whatever they hold.
            carrier: when `fold_ok` is False, whether non-zero constants
                can go into a carrier row instead (see the module docstring;
                chosen by `finalize`).
        """
        vals = x.vals.copy()
        free = np.zeros(len(vals), bool) if unread is None else np.asarray(unread, bool)
        if need_const:
            bad = np.isnan(vals)
            if not fold_ok and not carrier:
                bad |= vals != 0
            self.pin(x.ids[bad & ~free])
        k = (self.current, key)
        if not fold_ok and carrier:
            self.unread[k] = free
        if k in self.rows:
            prev = self.rows[k]
            self.union(prev.ids, x.ids)
            differ = ~(prev.vals == vals)  # NaN-aware: NaN never equals
            if need_const:
                self.pin(x.ids[differ & ~free])
            vals = np.where(differ, np.nan, vals)
        self.rows[k] = Channels(np.array(x.ids), vals)

    def track(self, channels) -> None:
        if channels is not None:
            self.tensors.append(channels)

    def finalize(self) -> None:
        """Pins what keeps the model valid; call once, after the analysis.

        Layers analysed as unknown at one of their calls keep all their units
        and rows. No tensor may lose all its channels: its first one stays.
        """
        for (owner, _), ch in list(self.rows.items()) + list(self.units.items()):
            if owner in self.opaque:
                self.pin(ch)
        for k, free in self.unread.items():
            self._choose_carrier(k, free)
        groups = self.tensors + [Channels(ids, ids) for ids in self.units.values()]
        changed = True
        while changed:
            changed = False
            for ch in groups:
                if len(ch) and self.removed(ch.ids).all():
                    self.pin(ch.ids[:1])
                    changed = True

    def _choose_carrier(self, k, free) -> None:
        """Keeps one constant row of the rows `k` if others must fold into it."""
        ch = self.rows[k]
        const = np.isfinite(ch.vals) & (ch.vals != 0)
        if not (const & ~free & self.removed(ch.ids)).any():
            return
        kept = const & ~self.removed(ch.ids)
        pool = kept if kept.any() else const  # a row kept anyway costs nothing
        index = int(np.argmax(np.where(pool, np.abs(ch.vals), -1.0)))
        self.pin(ch.ids[index:index + 1])
        self.carriers[k] = (index, float(ch.vals[index]))


class LayerPlan:
    """What the analysis decided for one layer of the model graph."""

    def __init__(self, graph: UnitGraph, owner: int):
        self._graph = graph
        self._owner = owner

    def rows(self, key: str):
        """`(keep, fold)` for the rows recorded as `key`, or None.

        `keep` is a boolean mask of the rows that stay; `fold` holds the
        constant value of each removed row (0 for kept rows), to be folded
        into the bias.
        """
        ch = self._graph.rows.get((self._owner, key))
        if ch is None:
            return None
        keep = ~self._graph.removed(ch.ids)
        # A removed row is constant or unread (all-zero weights): NaN folds as 0.
        fold = np.where(keep, 0.0, np.nan_to_num(ch.vals, nan=0.0))
        return keep, fold

    def carrier(self, key: str):
        """`(index, value)` of the row the removed constant rows of `key` fold
        into (instead of the bias), or None."""
        return self._graph.carriers.get((self._owner, key))

    def units(self, key: str):
        """Boolean mask of the output units (recorded as `key`) that stay."""
        ids = self._graph.units.get((self._owner, key))
        if ids is None:
            return None
        return ~self._graph.removed(ids)
