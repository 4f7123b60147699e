"""One ranking of items across tensors, in bounded memory (`Global`).

`Global` allocation prunes, across every candidate tensor, the items
(weights, blocks, N:M groups or units) of lowest score, in the order
`(score, candidate, index)`, until `k` weights are gone. Each candidate has
a floor (its lowest items up to `lo` weights are always taken, as are items
already pruned, which score `-inf`) and a cap (at most its lowest items up
to `hi` weights). What `Global` needs is how many weights each candidate
loses, so nothing is sorted: the global threshold score is found by
counting the items below trial thresholds (bisection on the order of
float32 values, seeded from a sample), and once few items remain between
the two bounds they are gathered and finished exactly. Scores are float32:
about 4 bytes per item plus 1-byte temporaries, for any number of items.

Items of equal size (weights, units, N:M groups) need no order within a
candidate: the `r` lowest items weigh `r * size`. Candidates whose items
differ in size (blocks cut short by the tensor's edge) are sorted on their
own, which is cheap since their items are blocks.
"""

from __future__ import annotations

import math

import numpy as np

_TOL = 1e-9  # counts are compared with this slack, as float sums of sizes
_GATHER = 1 << 16  # items left between the bounds when they are gathered
_SAMPLE = 1 << 14  # items sampled to seed the bounds


def _key(value) -> int:
    """Integer key with the order of float32 values (-0.0 and 0.0 equal)."""
    bits = int(np.float32(value).view(np.int32))
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def _value(key: int):
    bits = key if key >= 0 else (-key) | 0x80000000
    return np.uint32(bits).view(np.float32)


_HIGHEST = _key(np.inf)


class Ranked:
    """One candidate's items, ranked by `(score, index)`.

    Ranks `[0, first)` are forced (already pruned, or under the floor),
    ranks `[first, last)` form the pool the global ranking draws from.

    Args:
        scores: 1-D float32 scores (NaN counts as `-inf`, already pruned).
        sizes: weights per item: a number, or an array like `scores`.
        lo: floor in weights.
        hi: cap in weights.
    """

    def __init__(self, scores, sizes, lo, hi):
        s = np.asarray(scores, np.float32).reshape(-1)
        self.n = len(s)
        z = np.asarray(1.0 if sizes is None else sizes, np.float64)
        self.size = float(z.flat[0]) if z.size else 1.0
        if z.ndim == 0 or np.all(z == self.size):
            self.scores, self.cum = s, None
            n_inf = int(np.count_nonzero(s == -np.inf))
            floor = lo - _TOL
            forced = 0 if floor <= 0 else math.ceil(floor / self.size)
            allowed = math.floor((hi + _TOL) / self.size)
        else:
            order = np.lexsort((np.arange(self.n), s))
            self.scores = s[order]
            z = np.broadcast_to(z, s.shape)[order]
            self.cum = np.concatenate([[0.0], np.cumsum(z)])
            n_inf = int(np.searchsorted(self.scores, -np.inf, "right"))
            forced = int(np.searchsorted(self.cum[:-1], lo - _TOL, "left"))
            allowed = int(np.searchsorted(self.cum[1:], hi + _TOL, "right"))
        self.n_inf = n_inf
        self.first = min(self.n, max(n_inf, forced))
        self.last = max(self.first, min(self.n, allowed))

    def weight(self, r: int) -> float:
        """Weights in the `r` lowest-ranked items."""
        return r * self.size if self.cum is None else float(self.cum[r])

    def pool(self, r: int) -> float:
        """Pool weights among the `r` lowest-ranked items."""
        return self.weight(min(max(r, self.first), self.last)) - self.weight(self.first)

    def count(self, value, strict: bool = False) -> int:
        """Items scoring at most `value` (below it if `strict`)."""
        if self.cum is not None:
            return int(np.searchsorted(self.scores, value, "left" if strict else "right"))
        below = np.less(self.scores, value) if strict else np.less_equal(self.scores, value)
        return int(np.count_nonzero(below))

    def between(self, low, high):
        """Scores in `(low, high]`, sorted."""
        if self.cum is not None:
            a, b = (np.searchsorted(self.scores, v, "right") for v in (low, high))
            return self.scores[a:b]
        inside = np.logical_and(np.greater(self.scores, low), np.less_equal(self.scores, high))
        return np.sort(self.scores[inside])

    def taken_ties(self, start: int, end: int, room: float) -> int:
        """How many of the tie ranks `[start, end)` fit: an item is taken
        while the weight before it is under `room`."""
        if room <= 0 or end <= start:
            return 0
        if self.cum is None:
            return min(end - start, math.ceil(room / self.size))
        before = self.cum[start:end] - self.cum[start]
        return int(np.searchsorted(before, room, "left"))


def _seed_bounds(ranked, target):
    """Two scores around the one where `target` weights are reached, from a
    sample spread over every candidate (an estimate; it is checked)."""
    total = sum(r.n for r in ranked)
    values, weights = [], []
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for r in ranked:
        m = max(1, min(r.n, round(_SAMPLE * r.n / total)))
        at = (np.arange(m) * golden % 1.0 * r.n).astype(np.int64)
        values.append(r.scores[at])
        weights.append(np.full(m, r.weight(r.n) / m))
    values, weights = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    at = int(np.searchsorted(cum, target))
    margin = int(3 * math.sqrt(len(values))) + 1
    pick = lambda i: values[order[min(max(i, 0), len(values) - 1)]]  # noqa: E731
    return pick(at - margin), pick(at + margin)


def global_counts(ranked, k: float) -> list:
    """Weights each `Ranked` candidate loses when `k` weights go in all.

    Forced items go first; then pool items in `(score, candidate, index)`
    order, each taken while the weight taken before it is under `k` (so
    the total is within one item of `k`).
    """
    room = k - sum(r.weight(r.first) for r in ranked) - _TOL
    if room <= 0:
        return [r.weight(r.first) for r in ranked]

    def pool(counts):
        return sum(r.pool(c) for r, c in zip(ranked, counts))

    full = [r.n for r in ranked]
    if pool(full) < room:
        return [r.weight(r.last) for r in ranked]
    # Bounds on the threshold: pool(count <= lo) < room <= pool(count <= hi).
    # Items at `-inf` are forced, so the pool below `-inf` is empty.
    lo, hi = _key(-np.inf), _HIGHEST
    at_lo, at_hi = [r.n_inf for r in ranked], full
    for guess in _seed_bounds(ranked, k):
        counts = [r.count(guess) for r in ranked]
        if pool(counts) >= room:
            if _key(guess) < hi:
                hi, at_hi = _key(guess), counts
        elif _key(guess) > lo:
            lo, at_lo = _key(guess), counts
    while hi - lo > 1 and sum(at_hi) - sum(at_lo) > _GATHER:
        mid = (lo + hi) // 2
        counts = [r.count(_value(mid)) for r in ranked]
        if pool(counts) >= room:
            hi, at_hi = mid, counts
        else:
            lo, at_lo = mid, counts
    if hi - lo <= 1:  # one value left (many items may tie at it)
        t, below, upto = _value(hi), at_lo, at_hi
    else:  # few items lie in (lo, hi]: the threshold is one of their scores
        inside = [r.between(_value(lo), _value(hi)) for r in ranked]
        values = np.unique(np.concatenate(inside))
        a, b = 0, len(values) - 1
        while a < b:  # the lowest value whose pool reaches `room`
            m = (a + b) // 2
            counts = [c + int(np.searchsorted(g, values[m], "right"))
                      for c, g in zip(at_lo, inside)]
            a, b = (a, m) if pool(counts) >= room else (m + 1, b)
        t = values[a]
        below = [c + int(np.searchsorted(g, t, "left")) for c, g in zip(at_lo, inside)]
        upto = [c + int(np.searchsorted(g, t, "right")) for c, g in zip(at_lo, inside)]
    room -= pool(below)
    out = []
    for r, b_, u in zip(ranked, below, upto):  # ties: earlier candidate, lower index
        start, end = (min(max(c, r.first), r.last) for c in (b_, u))
        taken = r.taken_ties(start, end, room)
        room -= r.weight(end) - r.weight(start)
        out.append(r.weight(start + taken))
    return out
