"""Reading (and, where the converter errs, repairing) `.tflite` flatbuffers.

LiteRT's `Interpreter.get_tensor_details()` does not say which tensors are
stored in TFLite's sparse format, so the file is parsed with `flatbuffers`
and the TFLite schema module that ships with TensorFlow (or LiteRT).

A tensor stored sparse has a `sparsity` table: a traversal order, an
optional block map (block-sparse, e.g. 1x4 or 1x16 blocks) and per
dimension either DENSE or SPARSE_CSR metadata. Its buffer holds only the
stored values, so its zeros are `size - count_nonzero(values)`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np

from tfprune._base import keras_internals

_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "UINT16": np.uint16,
    "INT32": np.int32,
    "UINT32": np.uint32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def schema():
    """The generated TFLite schema module (flatbuffers object API)."""
    for name in keras_internals.FLATBUFFER_SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(  # pragma: no cover - TensorFlow always ships it
        "The TFLite schema module (schema_py_generated) was not found in TensorFlow "
        "or LiteRT; reinstall tensorflow."
    )


def _names(enum_class) -> dict:
    return {v: k for k, v in vars(enum_class).items() if k.isupper()}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One constant tensor of a `.tflite` file."""

    name: str
    shape: tuple
    dtype: str
    storage: str  # "dense", "sparse" or "sparse 1x4 blocks"...
    bytes: int
    zeros: int | None
    size: int

    @property
    def sparsity(self) -> float | None:
        return None if self.zeros is None or not self.size else self.zeros / self.size

    @property
    def sparse(self) -> bool:
        return self.storage != "dense"


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What `parse` found in a `.tflite` file."""

    ops: tuple
    tensors: tuple  # TensorInfo of the constant tensors, in file order
    inputs: tuple  # (name, shape signature, dtype)
    outputs: tuple

    @property
    def sparse_tensors(self) -> tuple:
        return tuple(t.name for t in self.tensors if t.sparse)


def _vector_bytes(union) -> int:
    if union is None or getattr(union, "values", None) is None:
        return 0
    values = np.asarray(union.values)
    return int(values.size * values.itemsize)


def storage(sparsity, rank) -> str:
    if sparsity is None:
        return "dense"
    block_map = list(sparsity.blockMap) if sparsity.blockMap is not None else []
    if not block_map:
        return "sparse"
    traversal = list(sparsity.traversalOrder)
    block = [1] * rank
    for j, dim in enumerate(block_map):
        block[dim] = sparsity.dimMetadata[traversal.index(rank + j)].denseSize
    return f"sparse {'x'.join(str(b) for b in block)} blocks"


def _buffer_data(model_bytes, buffer) -> bytes:
    if buffer is None:
        return b""
    if buffer.data is not None:
        return np.asarray(buffer.data, dtype=np.uint8).tobytes()
    if getattr(buffer, "offset", 0) > 1:  # data stored after the flatbuffer
        return bytes(model_bytes[buffer.offset : buffer.offset + buffer.size])
    return b""


def _zeros(data: bytes, dtype, zero_point: int, size: int):
    if dtype is None:
        return None
    values = np.frombuffer(data, dtype=dtype)
    nonzero = int(np.count_nonzero(values != zero_point))
    return size - nonzero


def _io(subgraph, indices, type_names):
    out = []
    for i in indices:
        t = subgraph.tensors[i]
        shape = t.shapeSignature if t.shapeSignature is not None else t.shape
        shape = tuple(int(d) for d in shape) if shape is not None else ()
        out.append((t.name.decode(), shape, type_names.get(t.type, str(t.type)).lower()))
    return tuple(out)


def load_object(model_bytes):
    """The file as a mutable `ModelT` (flatbuffers object API)."""
    return schema().ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)


def op_name(model_t, code_index) -> str:
    sch = schema()
    code = model_t.operatorCodes[code_index]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = _names(sch.BuiltinOperator).get(builtin, f"OP_{builtin}")
    if name == "CUSTOM" and code.customCode:
        return f"CUSTOM({code.customCode.decode()})"
    return name


def parse(model_bytes) -> FileInfo:
    """Operators, constant tensors and signature of a `.tflite` file."""
    sch = schema()
    model_t = load_object(model_bytes)
    type_names = _names(sch.TensorType)
    ops, tensors, seen = set(), [], set()
    for subgraph in model_t.subgraphs or []:
        for op in subgraph.operators or []:
            ops.add(op_name(model_t, op.opcodeIndex))
        for t in subgraph.tensors or []:
            buffer = model_t.buffers[t.buffer] if t.buffer else None
            data = _buffer_data(model_bytes, buffer)
            if not data or (t.buffer in seen):
                continue
            seen.add(t.buffer)
            shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
            type_name = type_names.get(t.type, str(t.type))
            q = t.quantization
            zero_point = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
            size = math.prod(shape)
            extra = 0
            if t.sparsity is not None:
                for dim in t.sparsity.dimMetadata or []:
                    extra += _vector_bytes(dim.arraySegments) + _vector_bytes(dim.arrayIndices)
            tensors.append(
                TensorInfo(
                    name=t.name.decode(),
                    shape=shape,
                    dtype=type_name.lower(),
                    storage=storage(t.sparsity, len(shape)),
                    bytes=len(data) + extra,
                    zeros=_zeros(data, _DTYPES.get(type_name), zero_point, size),
                    size=size,
                )
            )
    main = model_t.subgraphs[0]
    return FileInfo(
        ops=tuple(sorted(ops)),
        tensors=tuple(tensors),
        inputs=_io(main, main.inputs, type_names),
        outputs=_io(main, main.outputs, type_names),
    )


def pack(model_t) -> bytes:
    """Serializes a `ModelT` back to `.tflite` bytes.

    Byte vectors (the weight buffers) are aligned to 16 bytes, as the
    converter aligns them, so kernels can read them in place.
    """
    import flatbuffers

    class _AlignedBuilder(flatbuffers.Builder):
        def StartVector(self, elemSize, numElems, alignment):
            if elemSize == 1 and numElems >= 16:
                alignment = max(alignment, 16)
            return super().StartVector(elemSize, numElems, alignment)

    builder = _AlignedBuilder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _same_quantization(a, b) -> bool:
    if a is None or b is None:
        return False
    for name in ("scale", "zeroPoint"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None or not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return a.quantizedDimension == b.quantizedDimension


def compact(model_bytes: bytes) -> bytes:
    """Drops metadata the runtime does not use; the model is unchanged.

    - Tensor names: a tensor made by fusing ops is named after all of them
      ("model/dense/MatMul;model/dense/Relu;model/dense/BiasAdd"); in
      unrolled and quantized models these names can take most of the file.
      Each name keeps its first part, with "#2", "#3", ... on repeats.
      Signatures refer to tensors by index, so nothing depends on them.
    - Quantization parameters of a sparse tensor read only by DENSIFY ops
      whose outputs carry the same parameters: DENSIFY copies values and
      the op reading its output uses the output's parameters, so the
      per-channel scales and zero points were stored twice.
    """
    model_t = load_object(model_bytes)
    changed = False
    for subgraph in model_t.subgraphs:
        seen = {}
        for t in subgraph.tensors:
            name = (t.name or b"").split(b";")[0]
            seen[name] = seen.get(name, 0) + 1
            name = name if seen[name] == 1 else name + b"#%d" % seen[name]
            changed |= name != t.name
            t.name = name
        readers = {}
        for op in subgraph.operators:
            for i in op.inputs if op.inputs is not None else []:
                readers.setdefault(int(i), []).append(op)
        for index, ops in readers.items():
            tensor = subgraph.tensors[index]
            if tensor.sparsity is None or tensor.quantization is None:
                continue
            if all(
                op_name(model_t, op.opcodeIndex) == "DENSIFY"
                and _same_quantization(tensor.quantization, subgraph.tensors[op.outputs[0]].quantization)
                for op in ops
            ):
                tensor.quantization = None
                changed = True
    return pack(model_t) if changed else model_bytes
