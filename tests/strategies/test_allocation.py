import json

import keras
import numpy as np
import pytest

from tfprune import SensitivityTable
from tfprune.strategies._allocation import Candidate
from tfprune.strategies._allocation import Global
from tfprune.strategies._allocation import PerLayer
from tfprune.strategies._allocation import Uniform
from tfprune.strategies._allocation import get
from tfprune.strategies._sensitivity import SensitivityAllocation


def candidates(seed=0, sizes=(100, 60, 10)):
    rng = np.random.default_rng(seed)
    return [
        Candidate(f"layer{i}/kernel", n, layer=f"layer{i}", scores=rng.random(n) * (i + 1))
        for i, n in enumerate(sizes)
    ]


def pruned_count(result, cands):
    return sum(round(result[c.name] * c.n_params) for c in cands)


TABLE = SensitivityTable(
    "mae", "min", 1.0, [0.5, 0.8, 0.9],
    {
        "layer0": {"n_params": 100, "values": [1.01, 1.05, 1.2]},
        "layer1": {"n_params": 60, "values": [1.3, 2.0, 3.0]},
        "layer2": {"n_params": 10, "values": [1.0, 1.0, 1.1]},
    },
)


@pytest.mark.parametrize(
    "obj",
    [
        Uniform(),
        Uniform(min_sparsity=0.1, max_sparsity=0.9, protect_first=True),
        Global(normalize="l2", protect_last=True),
        PerLayer({"dense*": 0.8, "out": 0.0}, default=0.5, max_sparsity=0.95),
        SensitivityAllocation(TABLE, step=0.05, protect_first=True),
    ],
)
def test_config_round_trip(obj):
    config = obj.get_config()
    assert type(obj).from_config(config) == obj
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    assert keras.saving.deserialize_keras_object(serialized) == obj


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.5, 0.9])
def test_uniform_gives_every_tensor_the_target(sparsity):
    cands = candidates()
    result = Uniform().allocate(cands, sparsity)
    for c in cands:
        assert round(result[c.name] * c.n_params) == round(c.n_params * sparsity)


def test_protected_layers_get_zero_and_do_not_count():
    cands = candidates()
    cands.insert(1, Candidate("layer0/recurrent_kernel", 40, layer="layer0", scores=np.ones(40)))
    cands[2].protected = True
    result = Uniform(protect_first=True, protect_last=True).allocate(cands, 0.5)
    assert result["layer0/kernel"] == result["layer0/recurrent_kernel"] == 0.0
    assert result["layer1/kernel"] == 0.0 and result["layer2/kernel"] == 0.0
    g = Global(protect_first=True).allocate(cands, 0.5)
    assert g["layer0/kernel"] == g["layer0/recurrent_kernel"] == g["layer1/kernel"] == 0.0
    assert g["layer2/kernel"] == 0.5


def test_uniform_redistributes_what_a_capped_tensor_cannot_take():
    cands = candidates()
    cands[2].max_sparsity = 0.2  # e.g. a granularity's own limit
    result = Uniform().allocate(cands, 0.5)
    assert result["layer2/kernel"] == pytest.approx(0.2)
    assert pruned_count(result, cands) == round(170 * 0.5)
    assert result["layer0/kernel"] == pytest.approx(result["layer1/kernel"], abs=0.02)


@pytest.mark.parametrize("normalize", [None, "l1", "l2", "max"])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.93])
def test_global_prunes_the_exact_overall_count(normalize, sparsity):
    cands = candidates()
    result = Global(normalize=normalize).allocate(cands, sparsity)
    assert pruned_count(result, cands) == round(170 * sparsity)


def test_global_ranks_all_items_together():
    cands = [
        Candidate("a", 4, scores=np.array([0.1, 0.2, 5.0, 6.0])),
        Candidate("b", 4, scores=np.array([0.3, 7.0, 8.0, 9.0])),
    ]
    assert Global().allocate(cands, 3 / 8) == {"a": 0.5, "b": 0.25}


def test_global_ties_go_to_the_earlier_candidate():
    cands = [Candidate("a", 2, scores=np.ones(2)), Candidate("b", 2, scores=np.ones(2))]
    assert Global().allocate(cands, 0.25) == {"a": 0.5, "b": 0.0}
    # Each keeps at least one item, so the second tie goes to "b".
    assert Global().allocate(cands, 0.5) == {"a": 0.5, "b": 0.5}


def test_global_normalization_removes_the_scale_of_a_layer():
    cands = candidates()
    scaled = candidates()
    scaled[1].scores = scaled[1].scores * 1000.0
    for normalize in ("l1", "l2", "max"):
        assert Global(normalize=normalize).allocate(cands, 0.5) == Global(
            normalize=normalize).allocate(scaled, 0.5)
    raw = Global().allocate(scaled, 0.5)
    assert raw["layer1/kernel"] == 0.0  # its large scale alone spares it


def test_global_counts_previously_pruned_items_and_bounds():
    cands = candidates()
    cands[1].scores[:30] = -np.inf  # already pruned: half of layer1
    result = Global().allocate(cands, 0.2)
    assert result["layer1/kernel"] >= 0.5
    assert pruned_count(result, cands) == 34
    capped = Global(max_sparsity=0.3, min_sparsity=0.1).allocate(candidates(), 0.25)
    assert all(0.1 - 1e-9 <= v <= 0.3 + 1e-9 for v in capped.values())
    assert pruned_count(capped, candidates()) == round(170 * 0.25)


def test_global_with_item_sizes_counts_weights():
    cands = [
        Candidate("dense", 40, scores=np.array([1.0, 2.0, 3.0, 4.0]), sizes=10),
        Candidate("lstm", 80, scores=np.array([0.5, 9.0, 9.5, 9.9]), sizes=20),
    ]
    result = Global().allocate(cands, 0.25)  # 30 weights: the 0.5 unit (20) + the 1.0 unit (10)
    assert result == {"dense": 0.25, "lstm": 0.25}


def test_unreachable_targets_are_errors():
    with pytest.raises(ValueError, match=r"at most 0\.3 .* Received: sparsity=0\.5$"):
        Uniform(max_sparsity=0.3).allocate(candidates(), 0.5)
    with pytest.raises(ValueError, match=r"Received: max_sparsity=0\.1$"):
        Uniform(min_sparsity=0.2, max_sparsity=0.1)
    with pytest.raises(ValueError, match=r"Received: sparsity=1\.0$"):
        Uniform().allocate(candidates(), 1.0)
    with pytest.raises(ValueError, match=r"Received: normalize='l3'$"):
        Global(normalize="l3")
    with pytest.raises(ValueError, match=r"Received: scores=None for candidate 'a'$"):
        Global().allocate([Candidate("a", 3)], 0.5)


def test_every_candidate_keeps_at_least_one_item():
    result = Global().allocate([Candidate("a", 4, scores=np.zeros(4)),
                                Candidate("b", 4, scores=np.ones(4) * 9)], 0.6)
    assert result["a"] == 0.75


def test_per_layer_follows_the_schedule_with_explicit_values():
    cands = [Candidate("dense/kernel", 100, layer="dense"), Candidate("dense_1/kernel", 50,
             layer="dense_1"), Candidate("out/kernel", 10, layer="out")]
    alloc = PerLayer({"dense": 0.9, "out*": 0.2})
    assert alloc.allocate(cands, 0.8, final_sparsity=0.8) == {
        "dense/kernel": 0.9, "dense_1/kernel": 0.8, "out/kernel": 0.2}
    half = alloc.allocate(cands, 0.4, final_sparsity=0.8)
    assert half == {"dense/kernel": 0.45, "dense_1/kernel": 0.4, "out/kernel": 0.1}
    fixed = PerLayer({"dense*": 0.5}, default=0.0).allocate(cands, 0.8)
    assert fixed == {"dense/kernel": 0.5, "dense_1/kernel": 0.5, "out/kernel": 0.0}
    with pytest.raises(ValueError, match=r"Received: sparsities\['a'\]=2\.0$"):
        PerLayer({"a": 2})


def test_sensitivity_allocation_spares_sensitive_layers():
    sizes = (100, 60, 10)
    cands = [Candidate(f"layer{i}/kernel", n, layer=f"layer{i}") for i, n in enumerate(sizes)]
    result = SensitivityAllocation(TABLE).allocate(cands, 0.5)
    assert pruned_count(result, cands) == 85
    assert result["layer1/kernel"] < 0.1 < result["layer0/kernel"]
    assert result["layer2/kernel"] >= 0.5  # the insensitive small layer goes first
    with pytest.raises(ValueError, match=r"measure higher sparsities\. Received: sparsity=0\.95$"):
        SensitivityAllocation(TABLE).allocate(cands, 0.95)
    with pytest.raises(ValueError, match=r"Received: candidate='x'$"):
        SensitivityAllocation(TABLE).allocate([Candidate("x", 5)], 0.5)


def test_sensitivity_allocation_weights_by_parameter_count():
    table = SensitivityTable("mae", "min", 1.0, [0.5], {
        "big": {"n_params": 1000, "values": [1.1]},
        "small": {"n_params": 10, "values": [1.05]},
    })
    cands = [Candidate("big", 1000), Candidate("small", 10)]
    result = SensitivityAllocation(table).allocate(cands, 0.25)
    # Per pruned weight the big layer is far cheaper, despite a larger loss.
    assert result["big"] > 0.24 and result["small"] == 0.0


def test_sensitivity_allocation_with_explicit_curves_and_max_mode():
    rows = {"a": {"n_params": 10, "values": [0.5]}, "b": {"n_params": 10, "values": [0.89]}}
    table = SensitivityTable("accuracy", "max", 0.9, [0.5], rows)
    assert table.curve("a")[-1] == (0.5, pytest.approx(0.4))
    result = SensitivityAllocation(table).allocate([Candidate("a", 10), Candidate("b", 10)], 0.25)
    assert result == {"a": 0.0, "b": 0.5}
    cands = [Candidate("x", 10, curve=[(0.5, 1.0)]), Candidate("y", 10, curve=[(0.5, 0.1)])]
    assert SensitivityAllocation(table).allocate(cands, 0.2)["y"] == 0.4


def test_get_resolves_names():
    assert get("global") == Global()
    with pytest.raises(ValueError, match=r"Received: allocation='greedy'$"):
        get("greedy")
    with pytest.raises(TypeError, match=r"Received: allocation=1$"):
        get(1)


# ------------------------------------------------- Global: exact, in bounded memory
def _reference_global(cands, sparsity, lo_frac=0.0, cap=None):
    """The ranking spelled out with full sorts: forced items (already pruned,
    or under the floor), then pool items in (score, candidate, index) order,
    each taken while the weight before it is under k."""
    total = sum(c.n_params for c in cands)
    k = round(total * sparsity)
    forced_w, pool = 0.0, []
    counts = {c.name: 0.0 for c in cands}
    for i, c in enumerate(cands):
        s = np.asarray(c.scores, np.float32)
        z = np.broadcast_to(np.asarray(1.0 if c.sizes is None else c.sizes, float), s.shape)
        lo = min(lo_frac, sparsity) * c.n_params
        hi = min((1.0 if cap is None else cap) * c.n_params, c.n_params - z.max())
        before = 0.0
        for j in np.lexsort((np.arange(len(s)), s)):
            if s[j] == -np.inf or before < lo - 1e-9:
                forced_w += z[j]
                counts[c.name] += z[j]
            elif before + z[j] <= hi + 1e-9:
                pool.append((s[j], i, j, z[j], c.name))
            before += z[j]
    taken = forced_w
    for score, _, _, size, name in sorted(pool):
        if taken < k - 1e-9:
            counts[name] += size
            taken += size
    return {c.name: counts[c.name] / c.n_params for c in cands}


@pytest.mark.parametrize("small", [False, True], ids=["default", "tiny_bounds"])
def test_global_matches_a_reference_ranking(monkeypatch, small):
    from tfprune._masks import ranking as _ranking

    if small:  # the threshold search runs many rounds before it gathers
        monkeypatch.setattr(_ranking, "_GATHER", 8)
        monkeypatch.setattr(_ranking, "_SAMPLE", 16)
    rng = np.random.default_rng(7)
    for trial in range(60):
        cands = []
        for i in range(int(rng.integers(1, 4))):
            m = int(rng.choice([2, 9, 150, 600]))
            s = rng.integers(0, 4, m).astype("float32") if trial % 2 else rng.random(m)
            s = np.where(rng.random(m) < 0.2 * (trial % 3), -np.inf, s).astype("float32")
            sizes = [None, 3.0, rng.integers(1, 4, m).astype(float)][trial % 3]
            n = m if sizes is None else int(np.sum(np.broadcast_to(sizes, (m,))))
            cands.append(Candidate(f"c{i}", n, scores=s, sizes=sizes))
        floor, cap = [(0.0, None), (0.3, None), (0.0, 0.8)][trial % 3]
        sparsity = float(rng.choice([0.2, 0.5, 0.75]))
        expected = _reference_global(cands, sparsity, floor, cap)
        try:
            got = Global(min_sparsity=floor, max_sparsity=cap).allocate(cands, sparsity)
        except ValueError as e:  # the caps keep fewer weights than the target
            assert "cannot be reached" in str(e)
            continue
        assert got == pytest.approx(expected, abs=1e-12), trial


def test_global_needs_a_few_bytes_per_item():
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 400_000
    cands = [Candidate(f"l{i}", n // 4, scores=rng.random(n // 4).astype("float32") * (i + 1))
             for i in range(4)]
    Global(normalize="l2").allocate(cands, 0.9)  # imports and caches outside the count
    tracemalloc.start()
    try:
        result = Global(normalize="l2").allocate(cands, 0.9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pruned_count(result, cands) == round(n * 0.9)
    assert peak / n < 12  # a float64 copy and a full argsort took about 80


def test_global_keeps_items_already_pruned_beyond_the_target():
    # Two of three items were pruned before; the target asks for fewer.
    cands = [Candidate("a", 3, scores=np.array([-np.inf, -np.inf, 1.0]))]
    assert Global().allocate(cands, 0.5) == {"a": 2 / 3}
