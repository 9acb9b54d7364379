"""The schedule calls of the SDK's pipelines resource, in its two forms (client/pipelines.py
mixes them into ``LocalPipelines`` and ``HttpPipelines``; ``PipelinesAPI`` declares them)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any
from urllib.parse import quote

from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.pipelines.schedules import PipelineSchedule


def _schedules_path(*parts: str) -> str:
    return f"{API}/pipeline-schedules" + "".join("/" + quote(p, safe="") for p in parts)


class LocalSchedules:
    _t: LocalTransport

    def schedule(
        self,
        name: str,
        cron: str,
        params: dict[str, Any] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        max_runs: int | None = None,
        max_concurrent: int | None = None,
        catch_up: bool = False,
    ) -> PipelineSchedule:
        from cloche.pipelines import schedules

        return schedules.create_schedule(
            self._t.store,
            name,
            cron=cron,
            params=params,
            start=start,
            end=end,
            max_runs=max_runs,
            max_concurrent=max_concurrent,
            catch_up=catch_up,
            actor=self._t.actor,
        )

    def schedules(self) -> builtins.list[PipelineSchedule]:
        from cloche.pipelines import schedules

        return schedules.list_schedules(self._t.store)

    def get_schedule(self, schedule_id: str) -> PipelineSchedule:
        from cloche.pipelines import schedules

        return schedules.get_schedule(self._t.store, schedule_id)

    def pause_schedule(self, schedule_id: str) -> PipelineSchedule:
        from cloche.pipelines import schedules

        return schedules.set_enabled(self._t.store, schedule_id, False, actor=self._t.actor)

    def resume_schedule(self, schedule_id: str) -> PipelineSchedule:
        from cloche.pipelines import schedules

        return schedules.set_enabled(self._t.store, schedule_id, True, actor=self._t.actor)

    def delete_schedule(self, schedule_id: str) -> None:
        from cloche.pipelines import schedules

        schedules.delete_schedule(self._t.store, schedule_id, actor=self._t.actor)


class HttpSchedules:
    _t: HttpTransport

    def schedule(
        self,
        name: str,
        cron: str,
        params: dict[str, Any] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        max_runs: int | None = None,
        max_concurrent: int | None = None,
        catch_up: bool = False,
    ) -> PipelineSchedule:
        body = {
            "pipeline": name,
            "cron": cron,
            "params": dict(params or {}),
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "max_runs": max_runs,
            "max_concurrent": max_concurrent,
            "catch_up": catch_up,
        }
        return self._schedule("POST", _schedules_path(), json=body)

    def schedules(self) -> builtins.list[PipelineSchedule]:
        found = self._t.request("GET", _schedules_path()).json()
        return [PipelineSchedule.model_validate(s) for s in found]

    def get_schedule(self, schedule_id: str) -> PipelineSchedule:
        return self._schedule("GET", _schedules_path(schedule_id))

    def pause_schedule(self, schedule_id: str) -> PipelineSchedule:
        return self._schedule("POST", _schedules_path(schedule_id, "pause"))

    def resume_schedule(self, schedule_id: str) -> PipelineSchedule:
        return self._schedule("POST", _schedules_path(schedule_id, "resume"))

    def delete_schedule(self, schedule_id: str) -> None:
        self._t.request("DELETE", _schedules_path(schedule_id))

    def _schedule(self, method: str, path: str, **kwargs: Any) -> PipelineSchedule:
        return PipelineSchedule.model_validate(self._t.request(method, path, **kwargs).json())
