"""`cloche edge sync` against a real central server: every spooled row arrives exactly once.

The spool is filled by the edge's own writer (Spool, the payload log's line format); the upload
goes over HTTP to the central server's route, into its payload log. Faults are real: a central
server that stops answering midway, an answer lost after the server took the chunk, a port where
nothing listens.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from cloche.auth.roles import LOCAL_USER
from cloche.auth.tokens import create_token
from cloche.edge.spool import Spool, WhenFull, read_state, segment_files, site_id
from cloche.edge.sync import Central, sync_spool
from cloche.egress import Egress
from cloche.endpoints import service as endpoints
from cloche.errors import DestinationRefused, Forbidden, Unavailable
from cloche.logs import ingest
from cloche.logs.service import compact, log_root, read_endpoint_log
from cloche.logs.table import SCHEMA, rows_to_table
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.serving.payload_log import COLUMNS, encode_row, read_segment
from cloche.store.store import Store
from cloche.store.tables import EdgeUploadRow
from tests.integration.conftest import LiveServer, ServerFactory

ROWS = 120
START = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The central server of these tests listens on loopback, which sync refuses unless told."""
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1")


@pytest.fixture
def central(store: Store, sklearn_model_file: Path) -> Store:
    upload_model(
        store, principal=LOCAL_USER, inspector=inspect_here, source=sklearn_model_file, name="churn"
    )
    endpoints.create_endpoint(store, name="plant-7")
    endpoints.deploy(store, endpoint="plant-7", ref="churn:1")
    return store


@pytest.fixture
def secured(central: Store, start_server: ServerFactory) -> tuple[LiveServer, str]:
    """A central server that requires tokens, and a token of the edge role for it."""
    return start_server(auth={"required": True}), create_token(central, role="edge").token


def fill_spool(spool: Path, rows: int = ROWS) -> None:
    """``rows`` answered predictions, as an edge server of model churn:1 logs them."""
    log = Spool(spool, max_bytes=2**30, when_full=WhenFull.STOP)
    log.rotate_bytes = 4096  # several segments
    first_ms = int(START.timestamp() * 1000)
    for i in range(rows):
        row = (
            first_ms + i,
            f"edge-{i}",
            "churn",
            "churn",
            1,
            0,
            False,
            200,
            1.5,
            [[i, 0.5, 1.0, 2.0]],
            {"predict": [i % 2]},
            None,
            "predict",
        )
        log.write([encode_row(row)])
    log.close()


def central_ids(store: Store) -> list[str]:
    compact(log_root(store.home))
    table = read_endpoint_log(store, endpoint="plant-7", since="1d", limit=10_000)
    return sorted(table.column("request_id").to_pylist())


EXPECTED = sorted(f"edge-{i}" for i in range(ROWS))


def test_sync_uploads_every_row_once_and_a_second_sync_uploads_nothing(
    central: Store, secured: tuple[LiveServer, str], tmp_path: Path
) -> None:
    server, token = secured
    spool = tmp_path / "spool"
    fill_spool(spool)
    first = sync_spool(spool, Central(server.url, "plant-7", token), chunk_bytes=2000)
    assert (first.uploaded_rows, first.repeated_chunks) == (ROWS, 0)
    assert first.segments_removed > 1 and first.pending == []
    assert segment_files(spool) == []  # closed and uploaded: removed
    second = sync_spool(spool, Central(server.url, "plant-7", token))
    assert second.uploaded_rows == 0
    assert central_ids(central) == EXPECTED
    table = read_endpoint_log(central, endpoint="plant-7", since="1d", limit=10_000)
    assert set(table.column("endpoint").to_pylist()) == {"plant-7"}
    assert set(table.column("model").to_pylist()) == {"churn"}


class StopsAnswering(Central):
    """The real central server, until the link drops after ``chunks`` uploads."""

    def __init__(self, base: Central, chunks: int, *, lose_answer: bool = False) -> None:
        super().__init__(base.url, base.endpoint, base.token)
        object.__setattr__(self, "left", chunks)
        object.__setattr__(self, "lose_answer", lose_answer)

    def upload(self, site: str, segment: str, offset: int, chunk: bytes) -> dict[str, int]:
        if self.left == 0:  # type: ignore[attr-defined]
            raise Unavailable("link down")
        object.__setattr__(self, "left", self.left - 1)  # type: ignore[attr-defined]
        answer = super().upload(site, segment, offset, chunk)
        if self.lose_answer and self.left == 0:  # type: ignore[attr-defined]
            raise Unavailable("the answer was lost on the way back")
        return answer


@pytest.mark.parametrize("lose_answer", [False, True], ids=["link-drops", "answer-lost"])
def test_an_interrupted_sync_resumes_with_no_gap_and_no_duplicate(
    central: Store, secured: tuple[LiveServer, str], tmp_path: Path, lose_answer: bool
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool)
    real = Central(secured[0].url, "plant-7", secured[1])
    with pytest.raises(Unavailable):
        sync_spool(spool, StopsAnswering(real, 2, lose_answer=lose_answer), chunk_bytes=1500)
    assert read_state(spool)  # progress was saved chunk by chunk
    resumed = sync_spool(spool, real, chunk_bytes=1500)
    assert resumed.repeated_chunks == (1 if lose_answer else 0)
    assert central_ids(central) == EXPECTED


def test_sync_to_loopback_is_refused_unless_allowed(
    central: Store, live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool, rows=3)
    monkeypatch.delenv("CLOCHE_EGRESS__ALLOW")
    localhost = live_server.url.replace("127.0.0.1", "localhost")  # a name that resolves there
    for url in (live_server.url, localhost):
        with pytest.raises(DestinationRefused, match="CLOCHE_EGRESS__ALLOW"):
            sync_spool(spool, Central(url, "plant-7", None))
    assert len(segment_files(spool)) == 1 and central_ids(central) == []
    allowed = Central(
        localhost, "plant-7", live_server.token, egress=Egress.from_allow("127.0.0.0/8,::1")
    )
    assert sync_spool(spool, allowed).uploaded_rows == 3


def test_an_unreachable_central_server_is_a_clear_error_and_loses_nothing(
    central: Store, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool)
    before = {p.name: p.read_bytes() for p in segment_files(spool)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(Unavailable, match="cannot reach the central server") as info:
        sync_spool(spool, Central(f"http://127.0.0.1:{port}", "plant-7", None, timeout=2))
    assert "nothing was lost" in (info.value.hint or "")
    assert {p.name: p.read_bytes() for p in segment_files(spool)} == before


def test_sync_to_an_unknown_endpoint_or_without_a_token_is_refused(
    central: Store, start_server: ServerFactory, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool, rows=3)
    server = start_server(auth={"required": True})
    with pytest.raises(Exception, match="token") as info:
        sync_spool(spool, Central(server.url, "plant-7", None))
    assert type(info.value).__name__ == "Unauthorized"
    open_server = start_server()
    with pytest.raises(Exception, match="plant-9") as info:
        sync_spool(spool, Central(open_server.url, "plant-9", open_server.token))
    assert type(info.value).__name__ == "EndpointNotFound"
    assert len(segment_files(spool)) == 1


def test_a_predictor_token_may_not_upload_edge_logs(
    central: Store, secured: tuple[LiveServer, str], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool, rows=3)
    predictor = create_token(central, role="predictor").token
    with pytest.raises(Forbidden) as info:
        sync_spool(spool, Central(secured[0].url, "plant-7", predictor))
    assert "--role edge" in (info.value.hint or "")
    with central.transaction() as session:
        assert session.query(EdgeUploadRow).count() == 0
    assert len(segment_files(spool)) == 1  # kept for a sync with the right token


def test_each_row_keeps_the_edge_time_and_gets_the_central_receive_time(
    central: Store, secured: tuple[LiveServer, str], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool, rows=5)
    before = datetime.now(UTC).replace(microsecond=0)
    sync_spool(spool, Central(secured[0].url, "plant-7", secured[1]))
    after = datetime.now(UTC)
    unsynced = read_endpoint_log(central, endpoint="plant-7", since="1d")  # still a segment
    compact(log_root(central.home))
    compacted = read_endpoint_log(central, endpoint="plant-7", since="1d")
    for table in (unsynced, compacted):
        assert table.column("time").to_pylist()[0] == START  # the edge's clock
        received = table.column("received_at").to_pylist()
        assert len(received) == 5 and all(before <= r <= after for r in received)


def edge_upload(url: str, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"X-Cloche-Site": "a", "X-Cloche-Segment": "s", "X-Cloche-Offset": "0"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/api/v1/endpoints/plant-7/edge-logs", headers=headers, content=body)


def kept_nothing(store: Store) -> bool:
    with store.transaction() as session:
        recorded = session.query(EdgeUploadRow).count()
    return recorded == 0 and not list((log_root(store.home) / "segments").glob("edge-*"))


def test_a_chunk_over_the_cap_is_413_naming_the_cap(
    central: Store, start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(server={"max_edge_chunk_mb": 1})
    spool = tmp_path / "spool"
    fill_spool(spool, rows=1)
    line = segment_files(spool)[0].read_bytes()
    answer = edge_upload(server.url, line * (2**20 // len(line) + 1), server.token)
    assert answer.status_code == 413, answer.text
    assert "1 MiB" in answer.json()["error"]["message"]
    assert "CLOCHE_SERVER__MAX_EDGE_CHUNK_MB" in answer.json()["error"]["hint"]
    assert edge_upload(server.url, line, server.token).status_code == 200  # under the cap: taken


EDGE_ROW = (1_700_000_000_000, "r", "churn", "churn", 1, 0, False, 200, 1.5, [[1.0]], {"p": [1]})


def good_line(**changes: object) -> bytes:
    """One answered prediction as an edge server logs it, with ``changes`` to its fields."""
    row = dict(zip(COLUMNS, (*EDGE_ROW, None, "predict"), strict=True)) | changes
    return encode_row(list(row.values()))


@pytest.mark.parametrize(
    "change",
    [
        {"time": "yesterday"},
        {"version": "1"},
        {"shadow": 0},
        {"status": 42},
        {"latency_ms": -1},
        {"kind": "train"},
        {"endpoint": None},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_line_with_a_wrong_field_refuses_the_whole_chunk_naming_it(
    central: Store, live_server: LiveServer, change: dict[str, object]
) -> None:
    body = good_line() + good_line() + good_line(**change)
    answer = edge_upload(live_server.url, body, live_server.token)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert "line 3" in error["message"] and next(iter(change)) in error["message"]
    assert kept_nothing(central)
    assert edge_upload(live_server.url, good_line() * 3, live_server.token).json()["rows"] == 3


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (
            {"X-Cloche-Site": "../etc", "X-Cloche-Segment": "s", "X-Cloche-Offset": "0"},
            b"x\n",
            "X-Cloche-Site",
        ),
        (
            {"X-Cloche-Site": "a", "X-Cloche-Segment": "s", "X-Cloche-Offset": "-1"},
            b"x\n",
            "X-Cloche-Offset",
        ),
        (
            {"X-Cloche-Site": "a", "X-Cloche-Segment": "s", "X-Cloche-Offset": "0"},
            b"[1]\t[]\t{}",
            "whole lines",
        ),
        (
            {"X-Cloche-Site": "a", "X-Cloche-Segment": "s", "X-Cloche-Offset": "0"},
            b"garbage\n",
            "line 1",
        ),
    ],
)
def test_bad_uploads_are_422_and_keep_nothing(
    central: Store, live_server: LiveServer, headers: dict[str, str], body: bytes, message: str
) -> None:
    answer = httpx.post(
        f"{live_server.url}/api/v1/endpoints/plant-7/edge-logs",
        headers={**headers, **live_server.auth},
        content=body,
    )
    assert answer.status_code == 422, answer.text
    assert message in answer.json()["error"]["message"]
    with central.transaction() as session:
        assert session.query(EdgeUploadRow).count() == 0


def test_recover_moves_recorded_chunks_on_and_deletes_abandoned_ones(
    central: Store, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    fill_spool(spool, rows=2)
    data = segment_files(spool)[0].read_bytes()
    upload = ingest.ingest_edge_log(
        central, "plant-7", site=site_id(spool), segment="s1", offset=0, body=data
    )
    assert upload.accepted
    # A crash after the commit, before the move: the recorded chunk is back in incoming/.
    root = log_root(central.home)
    published = next((root / "segments").glob("edge-*"))
    staging = published.stem.rsplit("-", 1)[1]  # edge-<received ms>-<staging>
    incoming = root / "incoming" / f"{staging}.jsonl"
    published.rename(incoming)
    abandoned = root / "incoming" / "0123.jsonl"
    abandoned.write_bytes(data)
    old = time.time() - 3600
    os.utime(abandoned, (old, old))
    assert ingest.recover(central) == 1
    assert not abandoned.exists() and not incoming.exists()
    assert [p.name for p in (root / "segments").glob("edge-*")] == [published.name]  # its time
    assert central_ids(central) == ["edge-0", "edge-1"]


def test_partitions_written_before_received_at_still_read_with_it_null(central: Store) -> None:
    root = log_root(central.home)
    (root / "segments").mkdir(parents=True)
    segment = root / "segments" / "seg-1.jsonl"
    segment.write_bytes(good_line(endpoint="plant-7", time=int(START.timestamp() * 1000)))
    old = rows_to_table(list(read_segment(segment))).drop_columns(["received_at"])
    assert old.schema.names == SCHEMA.names[:-1]  # as partitions were written before
    segment.unlink()
    folder = root / "endpoint=plant-7" / f"date={START:%Y-%m-%d}" / f"hour={START:%H}"
    folder.mkdir(parents=True)
    pq.write_table(old, folder / "seg-1.parquet")
    table = read_endpoint_log(central, endpoint="plant-7", since="1d")
    assert table.column("request_id").to_pylist() == ["r"]
    assert table.column("received_at").to_pylist() == [None]
