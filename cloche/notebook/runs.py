"""Pipeline runs in a notebook: started in the background and drawn as their graph, the drawing
refreshed in place (an IPython display handle) until the run ends."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from cloche.config import Settings
from cloche.pipelines import records, runner
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.pipeline import Pipeline
from cloche.store.store import Store

POLL_SECONDS = 0.5


class RunHandle:
    """A run recorded in this machine's store: ``refresh()`` reads it again, ``watch()`` shows it
    until it ends, ``wait()`` waits without drawing. Shown in a notebook, it is its graph."""

    def __init__(self, run_id: str, settings: Settings | None = None) -> None:
        self.id = run_id
        self._settings = settings or Settings()
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def refresh(self) -> PipelineRun:
        """The run as recorded now: its state and each step's."""
        if self._store is None:  # opened once: a watch reads the run twice a second
            self._store = Store.open(self._settings)
        return records.get_run(self._store, self.id)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def wait(self, timeout: float | None = None) -> PipelineRun:
        """Block until the run ends (or ``timeout`` seconds pass); the run as it is then."""
        return self._follow(lambda run: None, timeout)

    def watch(self, timeout: float | None = None) -> PipelineRun:
        """Draw the run and redraw it as its steps move on, until it ends; returns it. Outside
        IPython there is nothing to draw on: it waits, as ``wait()`` does."""
        from cloche.notebook.display import current_shell

        if current_shell() is None:
            return self.wait(timeout)
        from IPython.display import HTML, display

        handle = display(HTML(self._repr_html_()), display_id=True)

        def redraw(run: PipelineRun) -> None:
            if handle is not None:
                handle.update(HTML(run._repr_html_()))

        return self._follow(redraw, timeout)

    def _follow(self, show: Any, timeout: float | None) -> PipelineRun:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: dict[str, str] | None = None
        while True:
            run = self.refresh()
            # The thread may end a moment after the run's last write: done means both. A thread
            # that died on an error may leave the run "running": its error is raised instead.
            ended = self._thread is None or not self._thread.is_alive()
            if ended and self._error is not None:
                raise self._error
            done = run.done and ended
            states = {**run.step_states(), "": run.state}
            if states != last or done:
                show(run)
                last = states
            if done or (deadline is not None and time.monotonic() >= deadline):
                return run
            time.sleep(POLL_SECONDS)

    def __repr__(self) -> str:
        run = self.refresh()
        return f"<pipeline run {run.id} of {run.pipeline}: {run.state}>"

    def _repr_html_(self) -> str:
        return self.refresh()._repr_html_()


def start(
    pipeline: Pipeline,
    params: dict[str, Any] | None = None,
    *,
    executor: str = "inprocess",
    use_cache: bool = True,
    workers: int = runner.DEFAULT_WORKERS,
    settings: Settings | None = None,
) -> RunHandle:
    """Record a run of ``pipeline`` and run it in a background thread; returns at once.
    The run is checked (its parameters, its executor) before this returns."""
    from cloche.auth.roles import local_actor

    settings = settings or Settings()
    store = Store.open(settings)
    try:
        run = runner.start_run(
            store, pipeline, dict(params or {}), actor=local_actor(), executor=executor
        )
    except BaseException:
        store.close()
        raise
    handle = RunHandle(run.id, settings)

    def execute() -> None:
        try:
            runner.execute_run(
                store,
                run.id,
                pipeline.components,
                root=runner.artifacts_root(store),
                use_cache=use_cache,
                workers=workers,
            )
        except BaseException as exc:  # shown by wait()/watch(), not lost in the thread
            handle._error = exc
            with contextlib.suppress(Exception):  # nor left "running" in the record
                records.set_run_state(store, run.id, "failed", error=f"{exc!r}")
        finally:
            store.close()

    handle._thread = threading.Thread(target=execute, name=f"pipeline-{run.id}", daemon=True)
    handle._thread.start()
    return handle


def watch(run: PipelineRun | RunHandle | str, *, timeout: float | None = None) -> PipelineRun:
    """Draw a run (one queued for the server, or started here) until it ends."""
    if isinstance(run, RunHandle):
        return run.watch(timeout)
    return RunHandle(run if isinstance(run, str) else run.id).watch(timeout)
