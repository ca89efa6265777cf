"""A tiny valid ONNX model (y = Relu(x)) built from raw protobuf bytes, without the onnx package.

It lets the runtime probe whether CUDA works before loading a real model.
"""

from __future__ import annotations


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _int_field(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def _value_info(name: str) -> bytes:
    dim = _field(1, _int_field(1, 1))  # TensorShapeProto.Dimension{dim_value: 1}
    shape = _field(2, dim)  # TypeProto.Tensor.shape
    tensor = _int_field(1, 1) + shape  # elem_type FLOAT
    return _field(1, name.encode()) + _field(2, _field(1, tensor))


def relu_model_bytes() -> bytes:
    """ModelProto bytes: IR 8, opset 13, graph x[1] -> Relu -> y[1]."""
    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Relu")
    graph = _field(1, node) + _field(2, b"probe") + _field(11, _value_info("x"))
    graph += _field(12, _value_info("y"))
    opset = _field(1, b"") + _int_field(2, 13)
    return _int_field(1, 8) + _field(7, graph) + _field(8, opset)
