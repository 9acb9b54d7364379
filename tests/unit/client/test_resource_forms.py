"""Every SDK resource offers the same calls in-process and over HTTP: one interface, two forms.

Each resource is a module of cloche.client holding its Protocol (the documented interface) and
its Local and Http classes side by side; a call added to one form only, or with a different
signature, fails here before a user meets it.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import cloche
from cloche.client import RESOURCES, resource_forms


def public_calls(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("name", RESOURCES)
def test_both_forms_expose_the_same_calls_with_the_same_signatures(name: str) -> None:
    local, http = resource_forms(name)
    assert public_calls(local) == public_calls(http)


@pytest.mark.parametrize("name", RESOURCES)
def test_the_documented_interface_is_what_both_forms_offer(name: str) -> None:
    module = importlib.import_module(f"cloche.client.{name}")
    interface = getattr(module, f"{name.capitalize()}API")
    local, _ = resource_forms(name)
    assert public_calls(interface) == public_calls(local)


@pytest.mark.parametrize("name", RESOURCES)
def test_the_client_names_each_resource_with_its_interface(name: str) -> None:
    annotation = inspect.get_annotations(cloche.Client)[name]
    assert annotation == f"{name.capitalize()}API"


def test_a_local_client_builds_every_resource_without_opening_the_store(tmp_path: Path) -> None:
    client = cloche.Client(home=tmp_path)
    for name in RESOURCES:
        assert isinstance(getattr(client, name), resource_forms(name)[0])
    assert "store" not in client._transport.__dict__  # opened on first use only
    client.close()


def test_an_http_client_builds_every_resource_with_the_http_form(tmp_path: Path) -> None:
    with cloche.Client("http://127.0.0.1:9", token="cl_x", home=tmp_path) as client:
        for name in RESOURCES:
            assert isinstance(getattr(client, name), resource_forms(name)[1])
