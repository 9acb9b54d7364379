"""Open Inference Protocol v2 over gRPC: ``ModelInferRequest`` in, ``ModelInferResponse`` out.

Pure codec over the standard messages (``grpc_gen/``): ``decode_grpc(request, spec, outputs)``
-> ``V2Request`` and ``encode_grpc(outputs, ...)`` -> ``ModelInferResponse``. Tensors arrive as
typed ``contents`` or as ``raw_input_contents`` (little-endian bytes; BYTES as 4-byte
length-prefixed elements); either way they are checked and assembled exactly as on the REST path
(``v2_rest``), so both transports accept and refuse the same requests. No I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloche.errors import InvalidInput
from cloche.serving.inputs import InputSpec
from cloche.serving.protocols.grpc_gen.grpc_predict_v2_pb2 import (
    InferTensorContents,
    ModelInferRequest,
    ModelInferResponse,
)
from cloche.serving.protocols.v2_rest import (
    DATATYPES,
    V2Request,
    assemble,
    check_output,
    datatype_of,
    element_count,
    from_raw,
    to_bytes,
)

# Which repeated field of InferTensorContents carries each datatype, and the numpy type it
# holds there; FP16 has none (the standard sends it raw only).
CONTENTS: dict[str, tuple[str, np.dtype[Any]]] = {
    "BOOL": ("bool_contents", np.dtype(np.bool_)),
    "INT8": ("int_contents", np.dtype(np.int32)),
    "INT16": ("int_contents", np.dtype(np.int32)),
    "INT32": ("int_contents", np.dtype(np.int32)),
    "INT64": ("int64_contents", np.dtype(np.int64)),
    "UINT8": ("uint_contents", np.dtype(np.uint32)),
    "UINT16": ("uint_contents", np.dtype(np.uint32)),
    "UINT32": ("uint_contents", np.dtype(np.uint32)),
    "UINT64": ("uint64_contents", np.dtype(np.uint64)),
    "FP32": ("fp32_contents", np.dtype(np.float32)),
    "FP64": ("fp64_contents", np.dtype(np.float64)),
    "BYTES": ("bytes_contents", np.dtype(object)),
}
# Tensor parameters of Triton features that cloche does not implement: refused by name rather
# than answered as if they were not there.
UNSUPPORTED = {
    "shared_memory_region": "shared memory is not supported; send the data in the request",
    "classification": "classification outputs are not supported; ask for 'probabilities'",
}


def decode_grpc(
    request: ModelInferRequest, spec: InputSpec, available: frozenset[str]
) -> V2Request:
    """Decode an inference request; ``available`` are the model's output names."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs",
            hint="send one raw_input_contents entry per input, in the order of inputs",
        )
    tensors: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        where, shape, count = _header(tensor, i)
        if tensor.name in tensors:
            raise InvalidInput(f"{where} is sent twice", hint="send each input tensor once")
        filled = [field.name for field, _ in tensor.contents.ListFields()]
        if raw:
            if filled:
                raise InvalidInput(
                    f"{where} has contents while the request uses raw_input_contents",
                    hint="send every input either in contents or in raw_input_contents",
                )
            chunk = memoryview(raw[i])
            array = from_raw(where, tensor.datatype, shape, count, chunk, "raw_input_contents")
        else:
            array = _from_contents(where, tensor.datatype, shape, count, tensor.contents, filled)
        tensors[tensor.name] = array
    asked = []
    for out in request.outputs:
        _refuse_unsupported(f"output {out.name!r}", out.parameters)
        asked.append(check_output(out.name, available))
    return V2Request(
        assemble(tensors, spec), frozenset(asked) or available, frozenset(), request.id or None
    )


def _header(tensor: ModelInferRequest.InferInputTensor, i: int) -> tuple[str, list[int], int]:
    """Where the tensor is (for messages), its shape and element count, all checked."""
    if not tensor.name:
        raise InvalidInput(f"inputs[{i}] needs a name")
    where = f"input {tensor.name!r}"
    count = element_count(where, tensor.shape)  # before copying a huge shape into a list
    shape = list(tensor.shape)
    if tensor.datatype not in DATATYPES:
        raise InvalidInput(
            f"{where}: unknown datatype {tensor.datatype!r}",
            hint=f"use one of {', '.join(DATATYPES)}",
        )
    _refuse_unsupported(where, tensor.parameters)
    return where, shape, count


def _refuse_unsupported(where: str, parameters: Any) -> None:
    for key, why in UNSUPPORTED.items():
        if key in parameters:
            raise InvalidInput(f"{where}: {why}")


def _from_contents(
    where: str,
    datatype: str,
    shape: list[int],
    count: int,
    contents: InferTensorContents,
    filled: list[str],
) -> np.ndarray:
    if datatype not in CONTENTS:
        raise InvalidInput(
            f"{where}: {datatype} has no typed contents", hint="send it in raw_input_contents"
        )
    field, held = CONTENTS[datatype]
    values = getattr(contents, field)
    if len(values) != count:
        others = [f for f in filled if f != field]
        raise InvalidInput(
            f"{where}: shape {shape} needs {count} values, {field} holds {len(values)}"
            + (f" ({datatype} data goes in {field}, not {others[0]})" if others else "")
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = [v.decode("utf-8", "replace") for v in values]
        return array.reshape(shape)
    array = np.asarray(values, dtype=held)
    target = DATATYPES[datatype]
    if target != held:  # INT8/16 and UINT8/16 travel in 32-bit fields: check they fit
        limits = np.iinfo(target)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise InvalidInput(
                f"{where}: values must fit {datatype} ({limits.min} to {limits.max})"
            )
        array = array.astype(target)
    return array.reshape(shape)


def encode_grpc(
    outputs: dict[str, np.ndarray],
    model_name: str,
    model_version: str,
    request_id: str,
    raw: bool,
) -> ModelInferResponse:
    """The response; ``raw`` (as the request was) puts tensors in ``raw_output_contents``."""
    response = ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    datatypes = [datatype_of(array) for array in outputs.values()]
    # FP16 has no typed field, and raw contents are all or nothing.
    raw = raw or "FP16" in datatypes
    for (name, array), datatype in zip(outputs.items(), datatypes, strict=True):
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(to_bytes(array, datatype))
            continue
        flat = array.reshape(-1)
        field = getattr(tensor.contents, CONTENTS[datatype][0])
        if datatype == "BYTES":
            field.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat)
        else:
            field.extend(flat.tolist())
    return response
