"""OIP v2 over gRPC on a real Router and store, called with the generated stub and tritonclient."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
import uvloop
from tritonclient.utils import InferenceServerException

from cloche.auth.roles import LOCAL_USER
from cloche.auth.tokens import create_token
from cloche.endpoints import service as endpoints
from cloche.errors import Unavailable
from cloche.logs import service as logs
from cloche.registry import upload
from cloche.registry.inspection import inspect_here
from cloche.server import store_tokens
from cloche.serving.grpc_server import GrpcServer, reserve_grpc_port, start_grpc_server
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.payload_log import PayloadLog
from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2 as pb
from cloche.serving.protocols.grpc_gen.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from cloche.serving.router import Router
from cloche.store.store import Store

FEATURES = ["tenure", "spend", "visits", "age"]
T = TypeVar("T")


class Loop:
    """An event loop in a thread, as a worker has one: the server and its batchers run there."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()  # what `cloche up` runs on
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture
def deployed(store: Store, sklearn_model_file: Path) -> Store:
    """churn:1 takes all traffic; churn:2 is deployed with none, reachable only when pinned."""
    for _ in range(2):
        upload.upload_model(
            store,
            principal=LOCAL_USER,
            inspector=inspect_here,
            source=sklearn_model_file,
            name="churn",
        )
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    endpoints.deploy(store, endpoint="churn", ref="churn:2", traffic=0)
    return store


@contextmanager
def serving(
    loop: Loop,
    store: Store,
    *,
    required: bool = False,
    log: PayloadLog | None = None,
    metrics: WorkerMetrics | None = None,
    max_message_mb: int = 1,
    **router_options: Any,
) -> Iterator[GrpcServer]:
    router = Router.for_store(store, payload_log=log, metrics=metrics, **router_options)
    loop.run(router.refresh())
    server = loop.run(
        start_grpc_server(
            router,
            store_tokens(store, required=required),
            host="127.0.0.1",
            port=0,
            max_message_mb=max_message_mb,
        )
    )
    try:
        yield server
    finally:
        loop.run(server.stop(None))


@pytest.fixture
def server(loop: Loop, deployed: Store) -> Iterator[GrpcServer]:
    with serving(loop, deployed) as running:
        yield running


@pytest.fixture
def stub(server: GrpcServer) -> Iterator[GRPCInferenceServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield GRPCInferenceServiceStub(channel)


@pytest.fixture
def client(server: GrpcServer) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield c
    c.close()


@pytest.fixture
def expected(sklearn_model_file: Path, iris_like: tuple[np.ndarray, np.ndarray]):
    """Five rows and what the model itself answers for them (for rows rounded to float32 too)."""
    X = iris_like[0][:5]
    model = joblib.load(sklearn_model_file)

    def answer(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame = pd.DataFrame(rows.astype(np.float64), columns=FEATURES)
        return model.predict(frame), model.predict_proba(frame)

    return X, answer


def infer_request(X: np.ndarray, **extra: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(**{"model_name": "churn", **extra})
    tensor = request.inputs.add(name="x", datatype="FP64", shape=X.shape)
    tensor.contents.fp64_contents.extend(X.ravel().tolist())
    return request


def test_health_and_metadata_through_the_stub(stub: GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "cloche"
    assert stub.ModelReady(pb.ModelReadyRequest(name="churn")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="churn", version="2")).ready
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="churn"))
    assert (meta.name, meta.platform, list(meta.versions)) == ("churn", "sklearn", ["1", "2"])
    assert [i.name for i in meta.inputs] == FEATURES
    assert {i.datatype for i in meta.inputs} == {"FP64"}


def test_typed_fp64_infer_equals_the_models_own(stub: GRPCInferenceServiceStub, expected) -> None:
    X, answer = expected
    labels, proba = answer(X)
    response = stub.ModelInfer(infer_request(X, id="q1"))
    assert (response.model_name, response.model_version, response.id) == ("churn", "1", "q1")
    assert not response.raw_output_contents
    out = {o.name: o for o in response.outputs}
    assert list(out["predict"].contents.int64_contents) == labels.tolist()
    assert list(out["probabilities"].shape) == [5, 3]
    got = np.array(out["probabilities"].contents.fp64_contents).reshape(5, 3)
    np.testing.assert_allclose(got, proba)


def test_pinned_version_and_requested_outputs(stub: GRPCInferenceServiceStub, expected) -> None:
    X, answer = expected
    request = infer_request(X, model_version="2")
    request.outputs.add(name="probabilities")
    response = stub.ModelInfer(request)
    assert response.model_version == "2" and [o.name for o in response.outputs] == ["probabilities"]
    np.testing.assert_allclose(
        np.array(response.outputs[0].contents.fp64_contents).reshape(5, 3), answer(X)[1]
    )


def test_tritonclient_fp32_raw_round_trip(client: triton.InferenceServerClient, expected) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn")
    assert [i.name for i in client.get_model_metadata("churn").inputs] == FEATURES
    X32 = expected[0].astype(np.float32)
    labels, proba = expected[1](X32)
    tensor = triton.InferInput("x", list(X32.shape), "FP32")
    tensor.set_data_from_numpy(X32)
    result = client.infer("churn", [tensor], request_id="t1")
    assert result.get_response().id == "t1" and result.get_response().model_version == "1"
    assert result.as_numpy("predict").tolist() == labels.tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba)
    pinned = client.infer(
        "churn", [tensor], model_version="2", outputs=[triton.InferRequestedOutput("predict")]
    )
    assert pinned.get_response().model_version == "2"
    assert pinned.as_numpy("probabilities") is None
    assert pinned.as_numpy("predict").tolist() == labels.tolist()


def test_errors_carry_their_status_and_message(stub: GRPCInferenceServiceStub, expected) -> None:
    X = expected[0]
    cases = [
        (infer_request(X, model_name="nope"), grpc.StatusCode.NOT_FOUND, "'nope' does not exist"),
        (infer_request(X, model_version="7"), grpc.StatusCode.NOT_FOUND, "no version '7'"),
        (infer_request(X[:, :3]), grpc.StatusCode.INVALID_ARGUMENT, "4 values, got 3"),
    ]
    bad_shape = infer_request(X)
    bad_shape.inputs[0].shape[:] = [5, 5]
    cases.append((bad_shape, grpc.StatusCode.INVALID_ARGUMENT, "input 'x': shape [5, 5] needs"))
    big = np.zeros((40_000, 4))  # 1.3 MB of FP64 contents, over the 1 MB limit
    cases.append((infer_request(big), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"))
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == code, info.value.details()
        assert message in info.value.details()


def test_a_request_over_the_inline_decode_size_is_answered(
    stub: GRPCInferenceServiceStub, expected
) -> None:
    # Few rows (the batcher takes 64 at most) in a large message: a 300 kB request id.
    request = infer_request(expected[0], id="r" * 300_000)
    assert request.ByteSize() > 256 * 1024
    response = stub.ModelInfer(request)
    predict = next(o for o in response.outputs if o.name == "predict")
    assert list(predict.shape) == [5] and response.id == request.id


def test_a_request_of_40000_rows_gets_the_models_own_outputs(
    loop: Loop, deployed: Store, expected
) -> None:
    # 40,000 rows (625 model calls at max_batch_size 64): once refused as over the queue.
    X = np.random.default_rng(3).normal(size=(40_000, len(FEATURES)))
    labels, proba = expected[1](X)
    request = infer_request(np.zeros((0, 4)))
    request.raw_input_contents.append(X.astype("<f8").tobytes())
    request.inputs[0].shape[:] = list(X.shape)
    options = [("grpc.max_receive_message_length", 8 * 2**20)]
    with (
        serving(loop, deployed, max_message_mb=8, max_request_rows=50_000) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=60)
        names = [o.name for o in response.outputs]
        out = dict(zip(names, response.raw_output_contents, strict=True))
        assert np.frombuffer(out["predict"], "<i8").tolist() == labels.tolist()
        np.testing.assert_allclose(np.frombuffer(out["probabilities"], "<f8").reshape(-1, 3), proba)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(infer_request(np.zeros((50_001, 4))), timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 50,000 rows" in refused.value.details()
        assert "CLOCHE_SERVING__MAX_REQUEST_ROWS" in refused.value.details()


@pytest.mark.parametrize(
    ("shape", "says"),
    [
        ([2**40, 2**40], "elements, over"),
        ([-1, 4], "non-negative"),
        ([1] * 100, "100 dimensions"),
        ([2**62, 4], "elements, over"),
    ],
    ids=["overflowing", "negative", "too-many-dimensions", "int64-overflowing"],
)
def test_hostile_shapes_are_invalid_argument_naming_the_tensor(
    stub: GRPCInferenceServiceStub, expected, shape: list[int], says: str
) -> None:
    X = expected[0]
    raw = infer_request(X)
    raw.inputs[0].ClearField("contents")
    raw.raw_input_contents.append(X.astype("<f8").tobytes())
    for request in (infer_request(X), raw):
        request.inputs[0].shape[:] = shape
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "input 'x': shape" in info.value.details() and says in info.value.details()
        assert len(info.value.details()) < 1000


def test_tritonclient_sees_the_same_errors(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", [tensor])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "4 values, got 3" in info.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [tensor])
    assert missing.value.status() == "StatusCode.NOT_FOUND"


def test_tokens_are_checked_as_on_rest(loop: Loop, deployed: Store, expected) -> None:
    predictor = create_token(deployed, role="predictor").token
    viewer = create_token(deployed, role="viewer").token
    with (
        serving(loop, deployed, required=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest()).live  # health needs no token
        request = infer_request(expected[0])
        for metadata, code in [
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", f"Bearer {viewer}"),), grpc.StatusCode.PERMISSION_DENIED),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, metadata=metadata)
            assert info.value.code() == code
        ok = stub.ModelInfer(request, metadata=(("authorization", f"Bearer {predictor}"),))
        assert ok.model_version == "1"
        triton_client = triton.InferenceServerClient(url=f"127.0.0.1:{running.port}")
        headers = {"authorization": f"Bearer {predictor}"}
        assert triton_client.get_model_metadata("churn", headers=headers).name == "churn"
        triton_client.close()


def test_calls_without_token_are_refused_before_their_message_is_read(
    loop: Loop, deployed: Store, expected
) -> None:
    with (
        serving(loop, deployed, required=True) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        # Server health and metadata stay open, as /v2/health/* and /v2 are on REST.
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "cloche"
        calls = [
            lambda: stub.ModelReady(pb.ModelReadyRequest(name="churn")),
            lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="churn")),
            lambda: stub.ModelInfer(infer_request(expected[0])),
            # Twice the server's 1 MB message cap: read, it would be RESOURCE_EXHAUSTED.
            lambda: stub.ModelInfer(infer_request(np.zeros((65_536, 4)))),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "token" in (info.value.details() or "")


def test_a_forwarded_call_without_token_on_an_open_server_is_refused(
    stub: GRPCInferenceServiceStub, expected
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(infer_request(expected[0]), metadata=(("x-forwarded-for", "203.0.113.9"),))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "CLOCHE_AUTH__REQUIRED=true" in (info.value.details() or "")
    assert stub.ModelInfer(infer_request(expected[0])).model_name == "churn"


def test_answered_and_failed_calls_reach_the_payload_log(
    loop: Loop, deployed: Store, tmp_path: Path, expected
) -> None:
    log = PayloadLog(tmp_path / "logs")
    metrics = WorkerMetrics()
    with (
        serving(loop, deployed, log=log, metrics=metrics) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        stub.ModelInfer(infer_request(expected[0][:2]), metadata=(("x-request-id", "ok-1"),))
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(infer_request(expected[0][:, :3]), metadata=(("x-request-id", "bad"),))
        # 250 kB of tensor names, refused before decoding: the log keeps at most 4 KiB of it.
        huge = pb.ModelInferRequest(model_name="churn")
        for i in range(50):
            huge.inputs.add(name=f"{i}" + "f" * 5000, datatype="FP64", shape=[1])
        huge.raw_input_contents.append(b"\0" * 8)
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(huge, metadata=(("x-request-id", "huge"),))
    try:
        by_id = {
            row["request_id"]: row for row in logs.rows(logs.read_log(tmp_path / "logs", "churn"))
        }
        assert by_id["ok-1"]["status"] == 200 and by_id["ok-1"]["outputs"] is not None
        assert by_id["bad"]["status"] == 422 and "4 values, got 3" in by_id["bad"]["error"]
        assert by_id["huge"]["status"] == 422
        assert 0 < len(by_id["huge"]["inputs"].encode()) <= 4096
        assert metrics.requests[("churn", "churn:1", 200)] == 1
        assert metrics.requests[("churn", "churn:1", 422)] == 2
    finally:
        log.close()


def test_workers_share_a_reserved_port(loop: Loop, deployed: Store) -> None:
    held = reserve_grpc_port("127.0.0.1", 0)
    port = held.getsockname()[1]
    router = Router.for_store(deployed)
    loop.run(router.refresh())
    auth = store_tokens(deployed, required=False)
    servers = [
        loop.run(
            start_grpc_server(
                router, auth, host="127.0.0.1", port=port, max_message_mb=1, reuse_port=True
            )
        )
        for _ in range(2)
    ]
    try:
        assert [s.port for s in servers] == [port, port]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest()).live
    finally:
        for s in servers:
            loop.run(s.stop(None))
        held.close()
    # A port someone else listens on (without SO_REUSEPORT) is refused with a clear error.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(Unavailable, match="cannot serve gRPC"):
            reserve_grpc_port("127.0.0.1", other.getsockname()[1])


def test_compressed_calls_are_served_and_capped_by_their_decompressed_size(
    client: triton.InferenceServerClient, expected
) -> None:
    X32 = expected[0].astype(np.float32)
    tensor = triton.InferInput("x", list(X32.shape), "FP32")
    tensor.set_data_from_numpy(X32)
    result = client.infer("churn", [tensor], compression_algorithm="gzip")
    assert result.as_numpy("predict").tolist() == expected[1](X32)[0].tolist()
    zeros = np.zeros((100_000, 4), dtype=np.float32)  # 1.6 MB that gzip makes tiny
    big = triton.InferInput("x", list(zeros.shape), "FP32")
    big.set_data_from_numpy(zeros)
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", [big], compression_algorithm="gzip")
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
