"""Lineage: which pipeline run and step made a model version, endpoint change, batch job or
artifact, and what it went on to make.

The interface (`LineageAPI`) and its two forms side by side: in-process on CLOCHE_HOME's
store, and over a server's REST API.
"""

from __future__ import annotations

from typing import Protocol

from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.lineage.entities import Lineage


class LineageAPI(Protocol):
    def get(self, ref: str) -> Lineage:
        """The lineage of ``ref``: a model version (``churn:3``, ``churn@prod``), an endpoint,
        a batch job id or a run's artifact (``RUN/STEP/OUTPUT``)."""
        ...


class LocalLineage:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def get(self, ref: str) -> Lineage:
        from cloche.lineage.service import get_lineage  # the pipelines' graph, on first use

        return get_lineage(self._t.store, ref)


class HttpLineage:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def get(self, ref: str) -> Lineage:
        response = self._t.request("GET", f"{API}/lineage", params={"ref": ref})
        return Lineage.model_validate(response.json())
