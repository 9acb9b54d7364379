"""What an endpoint serves, changed from the console: deploy, split traffic, undeploy; and
deploying a version from its model's page. The endpoint service, with the API's role and errors."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, authorize
from cloche.endpoints import service as endpoints
from cloche.endpoints.entities import Endpoint
from cloche.endpoints.traffic import parse_split
from cloche.errors import BadRequest, ClocheError
from cloche.registry.refs import check_name

from ..render import SESSION_KEY, html, is_htmx
from .endpoints import LOG_SINCE, endpoint_context
from .forms import form_error, form_fields

SHARE = "share:"  # the split editor's fields: share:<deployment> = percent


def _deployer(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, Permission.DEPLOY)
    return principal


def _traffic(raw: str) -> int | None:
    """The deploy form's optional percentage: empty leaves the service's default."""
    if raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(f"traffic {raw!r} is not a percentage", hint="a whole number 0-100")
    return int(raw)


def _changed(request: Request, principal: Principal, found: Endpoint, notice: str) -> Response:
    if not is_htmx(request):  # post/redirect/get: a reload does not change it again
        return RedirectResponse(f"/console/endpoints/{found.name}", status_code=303)
    context = endpoint_context(principal, found, notice=notice, log_since=LOG_SINCE)
    # The traffic section listens for this to redraw with the new deployments.
    headers = {"HX-Trigger": "endpoint-changed"}
    return html(request, "_endpoint_main.html", context, headers=headers)


async def deploy(request: Request) -> Response:
    """Deploy a model version, live (with a share) or as a shadow."""
    principal: Principal = request.scope[SESSION_KEY].principal
    name = check_name(request.path_params["name"])
    fields = await form_fields(request, ("model", "traffic", "shadow"))
    try:
        authorize(principal, Permission.DEPLOY)
        found = await asyncio.to_thread(
            endpoints.deploy,
            request.app.state.store,
            endpoint=name,
            ref=fields["model"],
            traffic=_traffic(fields["traffic"]),
            shadow=fields["shadow"] == "on",
            actor=principal.actor,
        )
    except ClocheError as error:
        context = {"endpoint_name": name, "deploy_form": fields, "can_deploy": True}
        return form_error(request, "_endpoint_deploy_form.html", "deploy-form", context, error)
    return _changed(request, principal, found, f"{fields['model']} is deployed")


async def set_split(request: Request) -> Response:
    """Every live deployment's share; refused unless they sum to 100 (the CLI's message)."""
    principal: Principal = request.scope[SESSION_KEY].principal
    name = check_name(request.path_params["name"])
    form = await request.form()
    split_fields = {
        str(k).removeprefix(SHARE): str(v).strip() for k, v in form.items() if k.startswith(SHARE)
    }
    try:
        authorize(principal, Permission.DEPLOY)
        split = parse_split([f"{ref}={pct}" for ref, pct in split_fields.items()])
        found = await asyncio.to_thread(
            endpoints.set_traffic,
            request.app.state.store,
            endpoint=name,
            split=split,
            actor=principal.actor,
        )
    except ClocheError as error:
        context = {"endpoint_name": name, "split": split_fields, "can_deploy": True}
        return form_error(request, "_endpoint_split_form.html", "split-form", context, error)
    shares = ", ".join(f"{ref} {pct}%" for ref, pct in found.traffic().items())
    return _changed(request, principal, found, f"traffic now: {shares}")


async def undeploy(request: Request) -> Response:
    """Remove a deployment; its share goes to the others in proportion."""
    principal = _deployer(request)
    name = check_name(request.path_params["name"])
    fields = await form_fields(request, ("ref",))
    found = await asyncio.to_thread(
        endpoints.undeploy,
        request.app.state.store,
        endpoint=name,
        ref=fields["ref"],
        actor=principal.actor,
    )
    return _changed(request, principal, found, f"{fields['ref']} is undeployed")


async def deploy_version(request: Request) -> Response:
    """From a model's page: deploy the version shown to an existing endpoint."""
    principal: Principal = request.scope[SESSION_KEY].principal
    model = check_name(request.path_params["name"])
    ref = f"{model}:{request.path_params['version']}"
    fields = await form_fields(request, ("endpoint", "traffic", "shadow"))
    try:
        authorize(principal, Permission.DEPLOY)
        found = await asyncio.to_thread(
            endpoints.deploy,
            request.app.state.store,
            endpoint=fields["endpoint"],
            ref=ref,
            traffic=_traffic(fields["traffic"]),
            shadow=fields["shadow"] == "on",
            actor=principal.actor,
        )
    except ClocheError as error:
        context: dict[str, Any] = {"ref": ref, "deploy_to": fields, "can_deploy": True}
        form_id = "deploy-version-form"
        return form_error(request, "_deploy_version_form.html", form_id, context, error)
    target = f"/console/endpoints/{found.name}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


ROUTES = [
    Route("/endpoints/{name}/deployments", deploy, methods=["POST"]),
    Route("/endpoints/{name}/traffic", set_split, methods=["POST"]),
    Route("/endpoints/{name}/undeploy", undeploy, methods=["POST"]),
    Route("/models/{name}/versions/{version:int}/deploy", deploy_version, methods=["POST"]),
]
