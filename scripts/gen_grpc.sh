#!/usr/bin/env bash
# Regenerate the Open Inference Protocol v2 gRPC stubs committed in
# cloche/serving/protocols/grpc_gen/ from grpc_predict_v2.proto beside them.
#
# grpcio-tools is needed only here, never at run time: it goes into a throwaway venv.
# Its version fixes what the stubs need at run time, which the `grpc` extra in
# pyproject.toml pins: grpcio-tools 1.75.1 ships protoc 31.1, whose Python code needs
# protobuf >= 6.31.1 (it also loads on protobuf 7) and grpcio >= 1.75.1.
# Usage: bash scripts/gen_grpc.sh   (from anywhere; writes into the work tree)
set -euo pipefail

TOOLS_VERSION=1.75.1
cd "$(dirname "$0")/.."
OUT=cloche/serving/protocols/grpc_gen
VENV=.cache/grpc-tools-$TOOLS_VERSION

if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "grpcio-tools==$TOOLS_VERSION"
fi

# -I . makes the generated imports absolute (cloche.serving.protocols.grpc_gen...).
"$VENV/bin/python" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    "$OUT/grpc_predict_v2.proto"

# A private descriptor pool instead of protobuf's default one: tritonclient, KServe and
# MLServer register the same `inference.*` messages there, and importing one of them in the
# same process as cloche would fail with "duplicate symbol 'inference.ServerLiveRequest'".
# Only message names are private: the wire format and the service path
# (/inference.GRPCInferenceService/...) stay the standard's.
sed -i 's/^DESCRIPTOR = _descriptor_pool\.Default()\.AddSerializedFile(/DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile(/' \
    "$OUT/grpc_predict_v2_pb2.py"
grep -q '_descriptor_pool.DescriptorPool().AddSerializedFile' "$OUT/grpc_predict_v2_pb2.py" \
    || { echo "gen_grpc.sh: the private-pool edit did not apply; check the protoc output" >&2; exit 1; }

echo "generated $OUT/grpc_predict_v2_pb2{.py,.pyi,_grpc.py}"
