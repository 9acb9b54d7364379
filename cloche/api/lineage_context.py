"""The pipeline step a request is made for: the ``X-Cloche-Pipeline-Step: RUN/STEP`` header, set
in the lineage context for the request, so the services record what the step made (see
``cloche/lineage/context.py``). It runs after ``BearerAuth``: an unauthenticated request never
gets here, and the header only labels what the caller's role already lets them do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloche.errors import ClocheError
from cloche.guards import header, send_error
from cloche.lineage.context import HEADER, parse, step_context

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

_NAME = HEADER.lower().encode()


class PipelineStepContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = header(scope, _NAME) if scope["type"] == "http" else None
        if text is None:
            await self.app(scope, receive, send)
            return
        try:
            step = parse(text)
        except ClocheError as error:  # a malformed header: refused before the body is read
            await send_error(send, error)
            return
        # The handler's thread (and anything it awaits) copies this context.
        with step_context(step):
            await self.app(scope, receive, send)
