"""Undo the converter's broken sparse encodings.

The TFLite converter's dense-to-sparse pass (TF 2.21) sometimes writes
sparse tensors that the runtime cannot use:

- a weight encoded in 1x4 blocks (float) or 1x16 blocks (int8) when the
  blocked dimension is not a multiple of the block, e.g. the kernel of a
  Dense layer with 8 inputs: values are lost (only the first rows survive)
  and the model computes zeros, NaN or wrong numbers;
- a block-sparse float16 weight fed to DEQUANTIZE, which reads it as if
  it were dense (NaN outputs).

A sparse tensor is safe when every op that reads it is DENSIFY, or
FULLY_CONNECTED reading it as its weights in a format its kernels support
(float32: random or 1x4 blocks; int8: 1x16 blocks) with blocks that tile
its shape.
The repair takes the dense values of the unsafe tensors from a conversion
without the sparsity pass (same settings otherwise) and stores them dense;
DENSIFY ops left without a sparse input are removed. The other tensors
stay sparse.
"""

from __future__ import annotations

import numpy as np

from tfprune.export import _flatbuffer
from tfprune.export._result import ExportError


def _blocks_fit(tensor) -> bool:
    sparsity = tensor.sparsity
    if sparsity is None or sparsity.blockMap is None or not len(sparsity.blockMap):
        return True
    rank = len(tensor.shape)
    traversal = list(sparsity.traversalOrder)
    for j, dim in enumerate(sparsity.blockMap):
        block = sparsity.dimMetadata[traversal.index(rank + j)].denseSize
        if block <= 0 or tensor.shape[dim] % block:
            return False
    return True


# Sparse weights that FULLY_CONNECTED computes on directly: TensorType
# (FLOAT32 = 0, INT8 = 9) -> storages its kernels support.
_FC_SPARSE = {0: ("sparse", "sparse 1x4 blocks"), 9: ("sparse 1x16 blocks",)}


def _safe(model_t, subgraph, index) -> bool:
    tensor = subgraph.tensors[index]
    if tensor.sparsity is None:
        return True
    if not _blocks_fit(tensor):
        return False
    storage = _flatbuffer.storage(tensor.sparsity, len(tensor.shape))
    for op in subgraph.operators:
        inputs = list(op.inputs) if op.inputs is not None else []
        if index not in inputs:
            continue
        name = _flatbuffer.op_name(model_t, op.opcodeIndex)
        if name == "DENSIFY":
            continue
        if name != "FULLY_CONNECTED" or inputs.index(index) != 1 or inputs.count(index) > 1:
            return False
        if storage not in _FC_SPARSE.get(tensor.type, ()):
            return False
    return True


def broken_tensors(model_bytes) -> list[str]:
    """Names of the sparse tensors that the runtime would misread."""
    model_t = _flatbuffer.load_object(model_bytes)
    return [
        g.tensors[i].name.decode()
        for g in model_t.subgraphs
        for i in range(len(g.tensors))
        if not _safe(model_t, g, i)
    ]


def _quant(tensor):
    q = tensor.quantization
    if q is None or q.scale is None:
        return None
    return np.asarray(q.scale, dtype=np.float64)


def _ops(model_t, subgraph) -> list:
    """`(name, op)` of the operators other than DENSIFY, in order."""
    named = [(_flatbuffer.op_name(model_t, op.opcodeIndex), op) for op in subgraph.operators]
    return [(name, op) for name, op in named if name != "DENSIFY"]


def _uses(model_t, subgraph, tensor_index) -> list:
    """`(op position, input position, op name)` of each use of a tensor.

    Uses through a DENSIFY op count as uses of its input; positions skip
    DENSIFY ops, so they are the same in a conversion without sparsity.
    """
    sources = {tensor_index}
    for op in subgraph.operators:
        if _flatbuffer.op_name(model_t, op.opcodeIndex) == "DENSIFY" and op.inputs[0] == tensor_index:
            sources.add(int(op.outputs[0]))
    return [
        (k, j, name)
        for k, (name, op) in enumerate(_ops(model_t, subgraph))
        for j, i in enumerate(op.inputs if op.inputs is not None else [])
        if i in sources
    ]


def _same_kind(a, b) -> bool:
    qa, qb = _quant(a), _quant(b)
    if list(a.shape) != list(b.shape) or a.type != b.type or (qa is None) != (qb is None):
        return False
    return qa is None or (qa.shape == qb.shape and np.allclose(qa, qb))


def _counterpart(model_t, subgraph, index, dense_t, dense_g):
    """The tensor of the dense conversion that `index` stands for, or None.

    Found by the operator that uses it (same position among the non-DENSIFY
    operators, same input slot); tensor names differ between conversions.
    """
    tensor = subgraph.tensors[index]
    dense_ops = _ops(dense_t, dense_g)
    for k, j, name in _uses(model_t, subgraph, index):
        if k >= len(dense_ops) or dense_ops[k][0] != name:
            return None
        candidate = dense_g.tensors[dense_ops[k][1].inputs[j]]
        data = dense_t.buffers[candidate.buffer].data if candidate.buffer else None
        if candidate.sparsity is None and data is not None and _same_kind(candidate, tensor):
            return np.asarray(data, dtype=np.uint8)
        return None
    return None


def _drop_densify(model_t, subgraph) -> None:
    keep = []
    for op in subgraph.operators:
        is_densify = _flatbuffer.op_name(model_t, op.opcodeIndex) == "DENSIFY"
        if is_densify and subgraph.tensors[op.inputs[0]].sparsity is None:
            source, target = int(op.inputs[0]), int(op.outputs[0])
            for other in subgraph.operators:
                if other.inputs is not None:
                    other.inputs = [source if i == target else i for i in other.inputs]
            subgraph.outputs = [source if i == target else i for i in subgraph.outputs]
            continue
        keep.append(op)
    subgraph.operators = keep


def repair(sparse_bytes: bytes, dense_bytes: bytes) -> tuple[bytes, list[str]]:
    """Stores the sparse tensors of `sparse_bytes` that are unsafe dense.

    Args:
        sparse_bytes: the file converted with the sparsity pass.
        dense_bytes: the same model converted without it.

    Returns:
        The repaired file and the names of the tensors made dense.

    Raises:
        ExportError: if a broken tensor has no dense counterpart with the
            same shape, type and quantization scales.
    """
    model_t = _flatbuffer.load_object(sparse_bytes)
    dense_t = _flatbuffer.load_object(dense_bytes)
    fixed = []
    for g, dense_g in zip(model_t.subgraphs, dense_t.subgraphs):
        broken = [i for i in range(len(g.tensors)) if not _safe(model_t, g, i)]
        for index in broken:
            t = g.tensors[index]
            name = t.name.decode()
            data = _counterpart(model_t, g, index, dense_t, dense_g)
            if data is None:
                raise ExportError(
                    f"The TFLite converter stored tensor '{name}' in a sparse format that "
                    "the runtime misreads (a converter bug), and it could not be repaired. "
                    "Export with `sparse=False`."
                )
            # A new buffer: the converter may share one between tensors.
            buffer = _flatbuffer.schema().BufferT()
            buffer.data = data.copy()
            model_t.buffers.append(buffer)
            t.sparsity = None
            t.buffer = len(model_t.buffers) - 1
            fixed.append(name)
        _drop_densify(model_t, g)
    if not fixed:
        return sparse_bytes, []
    used = {t.buffer for g in model_t.subgraphs for t in g.tensors}
    used.update(m.buffer for m in model_t.metadata or [])
    for i, buffer in enumerate(model_t.buffers):
        if i and i not in used and buffer.data is not None:
            buffer.data = None  # left over from a repaired tensor
    return _flatbuffer.pack(model_t), fixed
