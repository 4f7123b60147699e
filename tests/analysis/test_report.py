"""`sparsity_report`: table, dict, and the same numbers for every source."""

import keras
import numpy as np
import pytest

import tfprune

L = keras.layers


def _model():
    return keras.Sequential(
        [
            keras.Input((5, 3)),
            L.Conv1D(4, 3, name="conv"),
            L.LSTM(4, name="lstm"),
            L.BatchNormalization(name="bn"),
            L.Dense(2, name="head"),
        ],
        name="net",
    )


EXPECTED_ROWS = [
    ("conv", "kernel", (3, 3, 4)),
    ("lstm/lstm_cell", "kernel", (4, 16)),
    ("lstm/lstm_cell", "recurrent_kernel", (4, 16)),
    ("head", "kernel", (4, 2)),
]


@pytest.fixture
def pruned(rng):
    pruned = tfprune.prune(_model(), 0.6)
    pruned.compile("adam", "mse")
    x = rng.random((16, 5, 3)).astype("float32")
    pruned.fit(x, x[:, 0, :2], verbose=0, callbacks=[tfprune.PruningCallback()])
    return pruned


def test_rows_and_totals(pruned):
    report = tfprune.sparsity_report(pruned)
    assert [(r["layer"], r["weight"], r["shape"]) for r in report.rows] == EXPECTED_ROWS
    for row in report.rows:
        assert row["parameters"] == int(np.prod(row["shape"]))
        assert row["sparsity"] == row["zeros"] / row["parameters"]
    # LSTM kernels are pruned gate by gate: 4 blocks of 16 weights.
    lstm = 4 * round(16 * 0.6)
    assert [r["zeros"] for r in report.rows] == [round(36 * 0.6), lstm, lstm, round(8 * 0.6)]
    assert report.parameters == 36 + 64 + 64 + 8
    assert report.zeros == sum(r["zeros"] for r in report.rows)
    assert report.sparsity == report.zeros / report.parameters
    assert report["head/kernel"] is report.rows[-1]
    with pytest.raises(KeyError):
        report["head/bias"]


def test_to_dict(pruned):
    report = tfprune.sparsity_report(pruned)
    data = report.to_dict()
    assert set(data) == {"model", "tensors", "parameters", "zeros", "sparsity"}
    assert data["model"] == "net"
    assert data["tensors"] == report.rows and data["tensors"] is not report.rows
    assert (data["parameters"], data["zeros"], data["sparsity"]) == (
        report.parameters, report.zeros, report.sparsity
    )


def test_table_is_aligned_with_one_row_per_tensor_and_a_total(pruned):
    report = tfprune.sparsity_report(pruned)
    lines = str(report).splitlines()
    assert lines[0] == "Sparsity of 'net'"
    header, rule, *body, rule2, total = lines[1:]
    assert header.split() == ["layer", "weight", "shape", "parameters", "zeros", "sparsity"]
    assert rule == rule2 and set(rule) == {"-", " "}
    assert len(body) == len(EXPECTED_ROWS)
    for line, row in zip(body, report.rows):
        assert line.split() == [
            row["layer"], row["weight"], "x".join(map(str, row["shape"])),
            f"{row['parameters']:,}", f"{row['zeros']:,}", f"{row['sparsity']:.2%}",
        ]
    assert total.split() == [
        "total", f"{report.parameters:,}", f"{report.zeros:,}", f"{report.sparsity:.2%}"
    ]
    # Right-aligned numbers end in the same column; every column starts where
    # the header's does.
    assert len({len(line) for line in [header, rule, *body, total]}) == 1
    weight, shape = header.index("weight"), header.index("shape")
    for line, row in zip(body, report.rows):
        assert line.startswith(row["layer"] + " ")
        assert line[weight:].startswith(row["weight"] + " ")
        assert line[shape:].startswith("x".join(map(str, row["shape"])) + " ")
    assert "net" in repr(report) and "tensors=4" in repr(report)


def test_same_numbers_for_wrapped_stripped_and_saved_models(pruned, tmp_path):
    wrapped = tfprune.sparsity_report(pruned).to_dict()
    stripped_model = tfprune.strip(pruned)
    stripped = tfprune.sparsity_report(stripped_model).to_dict()
    pruned.save(tmp_path / "pruned.keras")
    stripped_model.save(tmp_path / "stripped.keras")
    from_pruned_file = tfprune.sparsity_report(tmp_path / "pruned.keras").to_dict()
    from_stripped_file = tfprune.sparsity_report(str(tmp_path / "stripped.keras")).to_dict()
    assert wrapped == stripped == from_pruned_file == from_stripped_file
    assert wrapped["zeros"] > 0


def test_wrapped_report_counts_effective_weights(pruned):
    """For a wrapped model the report counts weight x mask zeros."""
    wrapper = tfprune._training.wrapper.find_wrappers(pruned)[-1]
    kernel, mask = wrapper.pruned_weights[0].variable, wrapper.masks[0]
    # Put non-zero values behind the mask: the effective weights stay pruned.
    kernel.assign(np.where(mask.numpy() == 0, 1.0, kernel.numpy()).astype("float32"))
    assert tfprune.sparsity_report(pruned)["head/kernel"]["zeros"] == round(8 * 0.6)


def test_report_of_an_unpruned_model_and_of_a_layer():
    model = _model()
    report = tfprune.sparsity_report(model)
    assert [(r["layer"], r["weight"], r["shape"]) for r in report.rows] == EXPECTED_ROWS
    assert report.zeros == 0 and report.sparsity == 0.0
    dense = L.Dense(3, name="solo")
    dense.build((None, 4))
    dense.kernel.assign(np.eye(4, 3, dtype="float32"))
    layer_report = tfprune.sparsity_report(dense)
    assert [(r["layer"], r["weight"], r["zeros"]) for r in layer_report.rows] == [("solo", "kernel", 9)]
