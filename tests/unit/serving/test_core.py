"""The prediction core: V1, OIP v2 REST and gRPC go through one path (the same stages, shadows
and failure logging); deployments take their model from the cache; outputs come from the registry.

A worker's real pieces, in process: a Router over a snapshot, a ModelCache over a joblib file,
the REST data plane over ASGI, the gRPC server on loopback, and a payload log on disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest

from cloche.errors import CorruptArtifact
from cloche.registry.inspection import InspectRequest, inspect_here, with_serving_outputs
from cloche.serving.app import DataPlane
from cloche.serving.auth import TokenCache
from cloche.serving.core import Call
from cloche.serving.deployment import describe
from cloche.serving.grpc_server import GrpcServer, start_grpc_server
from cloche.serving.model_cache import ModelCache
from cloche.serving.payload_log import PayloadLog
from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2 as pb
from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc
from cloche.serving.router import Router
from cloche.serving.spec import DeploymentSpec, Snapshot
from cloche.signatures import Signature

STAGES = ["decode", "queue", "predict", "log", "encode", "total"]
ROW = [0.1, -0.2, 0.3, 0.4]


@pytest.fixture
def model_dir(tmp_path: Path, sklearn_model_file: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    sklearn_model_file.rename(folder / "model.joblib")
    return folder


@pytest.fixture
def recorded(model_dir: Path) -> dict[str, Any]:
    """The signature the registry records at upload (inspection.py), as a dict."""
    return inspect_here(InspectRequest("sklearn", model_dir)).to_dict()


def _spec(
    signature: dict[str, Any], *, deployment_id: int = 1, shadow: bool = False
) -> DeploymentSpec:
    return DeploymentSpec(
        deployment_id=deployment_id,
        endpoint="churn",
        model="churn",
        version=deployment_id,
        framework="sklearn",
        artifact_key="k",
        files={},
        sha256=f"sha-{deployment_id}",
        signature=signature,
        traffic=0 if shadow else 100,
        shadow=shadow,
        max_batch_size=32,
        timeout_ms=5000,
    )


@dataclass
class Source:
    snapshot_: Snapshot

    def generation(self) -> int:
        return self.snapshot_.generation

    def snapshot(self) -> Snapshot:
        return self.snapshot_


@dataclass
class Worker:
    router: Router
    cache: ModelCache
    plane: DataPlane
    http: httpx.AsyncClient
    grpc: pb_grpc.GRPCInferenceServiceStub
    log: PayloadLog
    finished: list[Call]

    def logged(self) -> list[dict[str, Any]]:
        """The payload log's rows: its meta columns by name (inputs and outputs left out)."""
        names = ("time", "request_id", "endpoint", "model", "version", "deployment_id")
        names += ("shadow", "status", "latency_ms", "error", "kind")
        rows = []
        for segment in sorted(self.log.folder.glob("*.jsonl")):
            for line in segment.read_bytes().splitlines():
                rows.append(dict(zip(names, orjson.loads(line.split(b"\t")[0]), strict=True)))
        return rows


@asynccontextmanager
async def _worker(
    tmp_path: Path, model_dir: Path, specs: list[DeploymentSpec]
) -> AsyncIterator[Worker]:
    cache = ModelCache(lambda spec: model_dir)
    log = PayloadLog(tmp_path / "log")
    router = Router(Source(Snapshot(1, {"churn": specs})), cache, payload_log=log)
    await router.refresh()
    finished: list[Call] = []
    auth = TokenCache(lambda token: pytest.fail("no token is sent"), required=False)
    plane = DataPlane(
        router,
        auth,
        max_body_bytes=2**20,
        payload_log=log,
        server_timing=True,
        on_finished=finished.append,
    )
    served: GrpcServer = await start_grpc_server(
        router, auth, host="127.0.0.1", port=0, max_message_mb=4, core=plane.core
    )
    transport = httpx.ASGITransport(app=plane)  # type: ignore[arg-type]
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
            grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel,
        ):
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            yield Worker(router, cache, plane, http, stub, log, finished)
    finally:
        await served.stop(None)
        log.close()


def _grpc_request(rows: list[list[float]], rid: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="churn", id=rid)
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[len(rows), len(rows[0])])
    tensor.contents.fp64_contents.extend(np.asarray(rows).ravel().tolist())
    return request


async def _each_protocol(w: Worker, rows: list[list[float]], tag: str) -> list[int]:
    """One prediction per protocol, with request ids ``tag-v1``, ``tag-v2``, ``tag-grpc``;
    their statuses in HTTP terms."""
    statuses = []
    r = await w.http.post(
        "/v1/models/churn:predict", json={"instances": rows}, headers={"x-request-id": f"{tag}-v1"}
    )
    statuses.append(r.status_code)
    tensor = {"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP64"}
    r = await w.http.post(
        "/v2/models/churn/infer",
        json={"inputs": [tensor | {"data": np.asarray(rows).ravel().tolist()}]},
        headers={"x-request-id": f"{tag}-v2"},
    )
    statuses.append(r.status_code)
    try:
        await w.grpc.ModelInfer(
            _grpc_request(rows, f"{tag}-grpc"), metadata=(("x-request-id", f"{tag}-grpc"),)
        )
        statuses.append(200)
    except grpc.aio.AioRpcError as exc:
        statuses.append(422 if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else 500)
    return statuses


def test_v1_and_oip_rest_report_the_same_stages_in_server_timing(
    tmp_path: Path, model_dir: Path, recorded: dict[str, Any]
) -> None:
    async def scenario() -> list[list[str]]:
        async with _worker(tmp_path, model_dir, [_spec(recorded)]) as w:
            v1 = await w.http.post("/v1/models/churn:predict", json={"instances": [ROW]})
            tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}
            v2 = await w.http.post("/v2/models/churn/infer", json={"inputs": [tensor]})
            assert v1.status_code == v2.status_code == 200, (v1.text, v2.text)
            return [
                [part.split(";")[0].strip() for part in r.headers["server-timing"].split(",")]
                for r in (v1, v2)
            ]

    v1, v2 = asyncio.run(scenario())
    assert v1 == v2 == STAGES


def test_every_protocol_reaches_the_hook_with_its_call_and_stages(
    tmp_path: Path, model_dir: Path, recorded: dict[str, Any]
) -> None:
    async def scenario() -> list[Call]:
        async with _worker(tmp_path, model_dir, [_spec(recorded)]) as w:
            assert await _each_protocol(w, [ROW, ROW], "ok") == [200, 200, 200]
            return w.finished

    before = time.time_ns()
    calls = asyncio.run(scenario())
    assert [c.rid for c in calls] == ["ok-v1", "ok-v2", "ok-grpc"]
    for call in calls:
        assert (call.endpoint, call.status) == ("churn", 200)
        assert call.deployment is not None and call.deployment.ref == "churn:1"
        assert call.timing is not None and list(call.timing) == STAGES
        assert before <= call.wall_ns <= time.time_ns()


def test_a_shadow_gets_a_copy_of_each_protocols_request(
    tmp_path: Path, model_dir: Path, recorded: dict[str, Any]
) -> None:
    specs = [_spec(recorded), _spec(recorded, deployment_id=2, shadow=True)]

    async def scenario() -> list[dict[str, Any]]:
        async with _worker(tmp_path, model_dir, specs) as w:
            assert await _each_protocol(w, [ROW], "shadowed") == [200, 200, 200]
            for _ in range(50):  # the shadows answer after their callers: wait for their lines
                if len(w.logged()) >= 6:
                    break
                await asyncio.sleep(0.02)
            return w.logged()

    rows = asyncio.run(scenario())
    seen = sorted((r["request_id"], r["shadow"], r["status"]) for r in rows)
    assert seen == sorted(
        (f"shadowed-{p}", shadow, 200) for p in ("v1", "v2", "grpc") for shadow in (False, True)
    )


def test_failures_are_logged_the_same_way_from_every_protocol(
    tmp_path: Path, model_dir: Path, recorded: dict[str, Any]
) -> None:
    async def scenario() -> tuple[list[int], list[dict[str, Any]], list[Call]]:
        async with _worker(tmp_path, model_dir, [_spec(recorded)]) as w:
            statuses = await _each_protocol(w, [[1.0, 2.0]], "bad")  # 2 features, not 4
            return statuses, w.logged(), w.finished

    statuses, rows, calls = asyncio.run(scenario())
    assert statuses == [422, 422, 422]
    assert [r["request_id"] for r in rows] == ["bad-v1", "bad-v2", "bad-grpc"]
    assert {(r["status"], r["kind"], r["deployment_id"]) for r in rows} == {(422, "predict", 1)}
    assert all("4" in r["error"] for r in rows)  # each says how many features it takes
    assert [c.status for c in calls] == [422, 422, 422]
    assert all(c.timing is not None and "log" in c.timing for c in calls)


def test_an_evicted_model_is_reloaded_by_its_next_request(
    tmp_path: Path, model_dir: Path, recorded: dict[str, Any]
) -> None:
    async def scenario() -> tuple[list[str], list[str], list[str], list[int]]:
        async with _worker(tmp_path, model_dir, [_spec(recorded)]) as w:
            resident = list(w.cache.sizes())
            evicted = w.cache.evict(set())
            gone = list(w.cache.sizes())
            statuses = await _each_protocol(w, [ROW], "again")
            assert list(w.cache.sizes()) == resident
            return resident, evicted, gone, statuses

    resident, evicted, gone, statuses = asyncio.run(scenario())
    assert resident == evicted == ["sklearn:sha-1"] and gone == []
    assert statuses == [200, 200, 200]


def test_outputs_and_signature_come_from_the_registry_without_loading_the_model(
    recorded: dict[str, Any],
) -> None:
    def never(spec: DeploymentSpec) -> Path:
        raise CorruptArtifact("the model was loaded; its outputs should come from the registry")

    cache = ModelCache(never)
    signature, outputs = describe(_spec(recorded), cache)
    assert outputs == {"predict", "probabilities"}
    assert signature.feature_names == ["tenure", "spend", "visits", "age"]
    assert cache.sizes() == {}


def test_a_deployment_serves_the_outputs_the_registry_recorded(
    tmp_path: Path, model_dir: Path, recorded: dict[str, Any]
) -> None:
    # The registry says this version answers predictions only; the object could do more.
    only_predict = dict(
        recorded, outputs=[o for o in recorded["outputs"] if o["name"] == "predict"]
    )
    body = {"instances": [ROW], "parameters": {"probabilities": True}}

    async def scenario() -> dict[str, Any]:
        async with _worker(tmp_path, model_dir, [_spec(only_predict)]) as w:
            r = await w.http.post("/v1/models/churn:predict", json=body)
            assert r.status_code == 200, r.text
            return dict(r.json())

    answer = asyncio.run(scenario())
    assert "predictions" in answer and "probabilities" not in answer


def test_a_version_registered_before_outputs_were_recorded_asks_its_model_once(
    model_dir: Path, recorded: dict[str, Any]
) -> None:
    cache = ModelCache(lambda spec: model_dir)
    no_outputs = _spec(dict(recorded, outputs=[]))
    signature, outputs = describe(no_outputs, cache)
    assert outputs == {"predict", "probabilities"}
    assert list(cache.sizes()) == ["sklearn:sha-1"]  # loaded once, to ask
    assert signature.feature_names == ["tenure", "spend", "visits", "age"]
    _, from_empty = describe(replace(no_outputs, signature={}), cache)
    assert from_empty == {"predict", "probabilities"}


def test_registration_records_the_outputs_a_custom_model_serves() -> None:
    bare = Signature(classes=("no", "yes"))
    recorded = with_serving_outputs(bare, probabilities=True)
    assert [(o.name, o.dtype, o.shape) for o in recorded.outputs] == [
        ("predict", "string", (-1,)),
        ("probabilities", "float64", (-1, 2)),
    ]
    assert [o.name for o in with_serving_outputs(Signature(), probabilities=False).outputs] == [
        "predict"
    ]
    assert with_serving_outputs(recorded, probabilities=True) == recorded  # already recorded
