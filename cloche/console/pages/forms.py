"""What the console's small forms share: reading their fields, and an error shown beside them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cloche.errors import ClocheError

from ..render import html, is_htmx


async def form_fields(request: Request, names: Sequence[str]) -> dict[str, str]:
    """The named fields of a posted form, stripped; a missing one is empty."""
    form = await request.form()
    return {name: str(form.get(name, "")).strip() for name in names}


def form_error(
    request: Request,
    partial: str,
    form_id: str,
    context: dict[str, Any],
    error: ClocheError,
    *,
    page: str = "endpoint_form_page.html",
) -> Response:
    """The form again with the message beside it: htmx swaps only the form; without htmx, the
    form alone on ``page`` (which includes ``form_template``)."""
    context = {**context, "form_error": error}
    if is_htmx(request):
        swap = {"HX-Retarget": f"#{form_id}", "HX-Reswap": "outerHTML"}
        return html(request, partial, context, status=error.http_status, headers=swap)
    page_context = {**context, "form_template": partial}
    return html(request, page, page_context, status=error.http_status)


def go_to(request: Request, target: str) -> Response:
    """After a change, the page that shows it: htmx navigates there (``HX-Redirect``); a plain
    form post gets post/redirect/get, so a reload does not send the form again."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
