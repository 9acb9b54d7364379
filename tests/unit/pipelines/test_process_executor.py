"""The process executor called directly: forked from here (no run going on), or by a run's fork
server; either way the same value, log, artifact metadata, crash and timeout."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloche.errors import StepFailed, Timeout
from cloche.pipelines import process_executor
from cloche.pipelines.artifacts import Dataset


def shout(text: str, data: Dataset) -> str:
    print(f"shouting {text}")
    data.metadata["pid"] = os.getpid()
    return text.upper()


def crash() -> None:
    os._exit(7)


def linger(path: str) -> None:
    time.sleep(2)
    Path(path).write_text("done")


def unpicklable(lock: Any) -> str:
    return type(lock).__name__


FUNCTIONS: list[Callable[..., Any]] = [shout, crash, linger, unpicklable]


@pytest.fixture(params=["forked here", "fork server"])
def how(request: pytest.FixtureRequest) -> Iterator[str]:
    with (
        process_executor.session(FUNCTIONS)
        if request.param == "fork server"
        else contextlib.nullcontext()
    ):
        yield request.param


def test_a_step_process_returns_its_value_log_and_artifact_metadata(how: str) -> None:
    data = Dataset("data", "/tmp/unused")
    value, log = process_executor.call(
        shout, {"text": "hi", "data": data}, {"data": data}, timeout=None, name="shout"
    )
    assert value == "HI" and log == "shouting hi\n"
    assert data.metadata["pid"] != os.getpid()


def test_a_step_process_that_exits_fails_with_its_exit_code(how: str) -> None:
    with pytest.raises(StepFailed, match="'crash''s process exited with code 7"):
        process_executor.call(crash, {}, {}, timeout=None, name="crash")


def test_a_step_process_past_its_timeout_is_killed(how: str, tmp_path: Path) -> None:
    marker = tmp_path / "done"
    with pytest.raises(Timeout, match=r"past its timeout of 0\.3 s and was stopped"):
        process_executor.call(linger, {"path": str(marker)}, {}, timeout=0.3, name="linger")
    time.sleep(2.2)
    assert not marker.exists()


def test_arguments_that_do_not_pickle_still_run_forked_from_here(how: str) -> None:
    import threading

    value, _ = process_executor.call(
        unpicklable, {"lock": threading.Lock()}, {}, timeout=None, name="lock"
    )
    assert value == "lock"


def pid() -> int:
    return os.getpid()


def test_each_step_gets_a_process_of_its_own_from_the_fork_servers_spares() -> None:
    with process_executor.session([pid], workers=2):
        pids = [process_executor.call(pid, {}, {}, timeout=None, name="pid")[0] for _ in range(5)]
    assert len(set(pids)) == 5 and os.getpid() not in pids


def test_a_spare_killed_while_it_waits_is_replaced_and_the_step_still_runs() -> None:
    import signal

    with process_executor.session([pid]):
        server = process_executor._SERVERS[-1]
        deadline = time.monotonic() + 30
        while not (spares := _children(server.pid)):  # one forked ahead as the server starts
            assert time.monotonic() < deadline, "the server forked no spare"
            time.sleep(0.01)
        assert len(spares) == 1
        os.kill(spares[0], signal.SIGKILL)
        while spares[0] in _children(server.pid):  # reaped by the server
            assert time.monotonic() < deadline, "the killed spare was not reaped"
            time.sleep(0.01)
        value, _ = process_executor.call(pid, {}, {}, timeout=None, name="pid")
    assert value not in (spares[0], os.getpid())


def _children(parent: int) -> list[int]:
    path = Path(f"/proc/{parent}/task/{parent}/children")
    return [int(p) for p in path.read_text().split()]


def chatty(lines: int) -> int:
    for i in range(lines):
        print(f"ligne {i} — é")
    return lines


def test_a_long_log_keeps_its_end_whole_including_non_ascii_text(how: str) -> None:
    from cloche.pipelines.outcome import MAX_LOG_CHARS

    value, log = process_executor.call(chatty, {"lines": 20_000}, {}, timeout=None, name="chatty")
    assert value == 20_000
    assert len(log) == MAX_LOG_CHARS
    assert log.endswith("ligne 19999 — é\n") and "\ufffd" not in log


def echo(data: bytes) -> int:
    return len(data)


def test_arguments_larger_than_a_socket_buffer_reach_the_step_whole() -> None:
    with process_executor.session([echo]):
        value, _ = process_executor.call(
            echo, {"data": b"x" * 3_000_000}, {}, timeout=None, name="echo"
        )
    assert value == 3_000_000


def test_a_spare_killed_after_the_runner_holds_it_is_passed_over() -> None:
    import signal

    with process_executor.session([pid], workers=2):
        server = process_executor._SERVERS[-1]
        first, _ = process_executor.call(pid, {}, {}, timeout=None, name="pid")
        held = server._announced()  # the runner now holds this spare, idle
        server.spares.append(held)
        os.kill(held.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while held.pid in _children(server.pid):  # reaped by the server
            assert time.monotonic() < deadline, "the killed spare was not reaped"
            time.sleep(0.01)
        value, _ = process_executor.call(pid, {}, {}, timeout=None, name="pid")
    assert value not in (held.pid, first, os.getpid())
