"""Channel dependencies and the unit groups `Units` decides on together."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import strategies
from tfprune._base import walk
from tfprune._base.channels import channel_dependencies
from tfprune.granularity import UnitGroup
from tfprune.granularity import UnitSlice

L = keras.layers


def residual():
    """stem -> BN -> relu -> [1x1 -> BN -> relu -> 3x3 -> BN] + skip."""
    x = keras.Input((8, 8, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(6, 3, padding="same", name="stem")(x)))
    b = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 1, name="branch")(a)))
    b = L.BatchNormalization()(L.Conv2D(6, 3, padding="same", name="branch_out")(b))
    y = L.ReLU()(L.Add()([a, b]))
    return keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(y)))


def squeeze_excitation():
    """expand -> BN -> swish -> depthwise -> BN -> swish -> x SE gate -> project."""
    x = keras.Input((8, 8, 3))
    e = L.Activation("swish")(L.BatchNormalization()(L.Conv2D(8, 1, name="expand")(x)))
    d = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(e)
    d = L.Activation("swish")(L.BatchNormalization()(d))
    s = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(d))
    s = L.Conv2D(4, 1, activation="swish", name="se_reduce")(s)
    s = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(s)
    y = L.Multiply()([d, s])
    y = L.BatchNormalization()(L.Conv2D(5, 1, name="project")(y))
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(y)))


def concat_into_add():
    x = keras.Input((4,))
    a, b, c = L.Dense(3, name="a")(x), L.Dense(2, name="b")(x), L.Dense(5, name="c")(x)
    y = L.Add()([L.Concatenate()([a, b]), c])
    return keras.Model(x, L.Dense(1, name="head")(y))


def _by_layer(model):
    """`{tuple of layer names: axes}` for every group of the model's weights."""
    weights = walk.prunable_weights(model)
    out = {}
    for g in strategies.unit_groups(weights, model):
        out[tuple(weights[s.tensor].layer.name for s in g.slices)] = [s.axis for s in g.slices]
    return out


def _layer(model, name):
    return walk.unwrap(next(layer for layer in model.layers if walk.unwrap(layer).name == name))


# ------------------------------------------------------------ dependencies
def test_add_joins_the_channels_of_its_producers():
    model = residual()
    deps = channel_dependencies(model)
    stem, out, branch = (deps.units[id(_layer(model, n))] for n in ("stem", "branch_out", "branch"))
    np.testing.assert_array_equal(deps.roots(stem), deps.roots(out))
    assert not set(deps.roots(branch)) & set(deps.roots(stem))
    assert not deps.pinned(stem).any()
    assert deps.pinned(deps.units[id(_layer(model, "head"))]).all()  # model output


def test_depthwise_and_gate_take_the_channels_they_read():
    model = squeeze_excitation()
    deps = channel_dependencies(model)
    expand = deps.roots(deps.units[id(_layer(model, "expand"))])
    np.testing.assert_array_equal(deps.roots(deps.channels[id(_layer(model, "dw"))]), expand)
    np.testing.assert_array_equal(deps.roots(deps.units[id(_layer(model, "se_expand"))]), expand)
    reduce = deps.roots(deps.units[id(_layer(model, "se_reduce"))])
    assert not set(reduce) & set(expand)


def test_concatenate_offsets_the_classes():
    model = concat_into_add()
    deps = channel_dependencies(model)
    a, b, c = (deps.roots(deps.units[id(_layer(model, n))]) for n in "abc")
    np.testing.assert_array_equal(c, np.concatenate([a, b]))


def test_unknown_layers_pin_what_they_read_and_couple_nothing():
    x = keras.Input((4,))
    a = L.LayerNormalization()(L.Dense(6, name="a")(x))
    b = L.Dense(6, name="b")(x)
    model = keras.Model(x, L.Dense(1, name="head")(L.Add()([a, b])))
    deps = channel_dependencies(model)
    assert deps.pinned(deps.units[id(_layer(model, "a"))]).all()
    assert deps.pinned(deps.units[id(_layer(model, "b"))]).all()  # added to unknown channels
    assert _by_layer(model) == {("a",): [-1], ("b",): [-1], ("head",): [-1]}


def test_depthwise_with_a_multiplier_is_not_followed():
    x = keras.Input((6, 6, 2))
    y = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(L.Conv2D(4, 1, name="c")(x))
    model = keras.Model(x, L.Dense(1, name="head")(L.Flatten()(y)))
    deps = channel_dependencies(model)
    assert id(_layer(model, "dw")) not in deps.channels
    assert deps.pinned(deps.units[id(_layer(model, "c"))]).all()
    assert _by_layer(model) == {("c",): [-1], ("dw",): [-2], ("head",): [-1]}


# ---------------------------------------------------------------- groups
def test_unit_groups_couple_residual_producers():
    assert _by_layer(residual()) == {
        ("stem", "branch_out"): [-1, -1], ("branch",): [-1], ("head",): [-1],
    }


def test_unit_groups_couple_depthwise_and_squeeze_excitation():
    assert _by_layer(squeeze_excitation()) == {
        ("expand", "dw", "se_expand"): [-1, -2, -1], ("se_reduce",): [-1],
        ("project",): [-1], ("head",): [-1],
    }


def test_channels_that_do_not_line_up_keep_a_group_each():
    assert _by_layer(concat_into_add()) == {("a",): [-1], ("b",): [-1], ("c",): [-1],
                                            ("head",): [-1]}


def test_a_chain_without_merges_keeps_one_group_per_tensor():
    model = keras.Sequential([keras.Input((6,)), L.Dense(5), L.Dense(4), L.Dense(2)])
    weights = walk.prunable_weights(model)
    expected = [UnitGroup(pw.name, (UnitSlice(i, -1, 1),)) for i, pw in enumerate(weights)]
    assert strategies.unit_groups(weights, model) == expected
    assert strategies.unit_groups(weights) == expected  # no model: no coupling


def test_pruned_and_nested_models_give_the_same_groups():
    inner = residual()
    x = keras.Input((8, 8, 3))
    outer = keras.Model(x, L.Dense(1, name="top")(inner(x)))
    assert _by_layer(tfprune.prune(residual(), 0.5)) == _by_layer(residual())
    assert _by_layer(outer) == {**_by_layer(inner), ("top",): [-1]}


# ----------------------------------------------------------------- masks
def _units_masks(model, sparsity):
    plan = strategies.dense(units=True).plan(model)
    masks = plan.compute_masks(sparsity)
    return {(plan.weights[i].layer.name, plan.weights[i].variable.name): np.asarray(m)
            for i, m in enumerate(masks)}


def test_coupled_channels_are_pruned_together_by_their_summed_scores():
    model = residual()
    stem, out = _layer(model, "stem"), _layer(model, "branch_out")
    rng = np.random.default_rng(0)
    ws = rng.normal(size=stem.kernel.shape).astype("float32")
    wo = rng.normal(size=out.kernel.shape).astype("float32")
    ws[..., 0] *= 1e-3  # alone, the stem would drop channel 0 first ...
    wo[..., 0] *= 1e3  # ... but its group holds the largest weights
    stem.kernel.assign(ws)
    out.kernel.assign(wo)
    masks = _units_masks(model, 0.5)
    kept = masks[("stem", "kernel")].reshape(-1, 6).max(axis=0)
    np.testing.assert_array_equal(kept, masks[("branch_out", "kernel")].reshape(-1, 6).max(axis=0))
    assert kept.sum() == 3 and kept[0] == 1
    score = (ws ** 2).reshape(-1, 6).sum(axis=0) + (wo ** 2).reshape(-1, 6).sum(axis=0)
    np.testing.assert_array_equal(np.flatnonzero(kept), np.sort(np.argsort(score)[3:]))


def test_a_depthwise_channel_goes_with_the_channel_that_feeds_it():
    masks = _units_masks(squeeze_excitation(), 0.5)
    expand = masks[("expand", "kernel")].reshape(-1, 8).max(axis=0)
    dw = masks[("dw", "kernel")][..., 0].reshape(-1, 8).max(axis=0)
    gate = masks[("se_expand", "kernel")].reshape(-1, 8).max(axis=0)
    assert expand.sum() == 4
    np.testing.assert_array_equal(expand, dw)
    np.testing.assert_array_equal(expand, gate)


@pytest.mark.parametrize("build", [residual, squeeze_excitation])
def test_protecting_one_member_protects_its_group(build):
    model = build()
    plan = strategies.Strategy("l2_norm", "units", protect=["stem", "dw"]).plan(model)
    names = {g.name.split("/")[0] for g in plan.groups if g.protected}
    assert names == ({"stem"} if build is residual else {"expand"})
