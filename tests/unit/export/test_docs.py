"""The bundle's Dockerfile and install commands, with and without wheels."""

from __future__ import annotations

from cloche.export import docs


def test_with_wheels_the_install_needs_no_index_and_the_image_no_pip() -> None:
    first, serve = docs.install_commands(with_wheels=True)
    assert first == (
        "python3 -m venv .venv && .venv/bin/pip install --no-index --find-links wheels "
        "--no-deps -r requirements.txt"
    )
    assert serve == ".venv/bin/cloche serve ."
    text = docs.dockerfile(python_version="3.12", pip_wheel="pip-24.0-py3-none-any.whl")
    lines = text.splitlines()
    assert "ARG BASE=python:3.12-slim" in lines and "FROM ${BASE}" in lines
    assert "COPY . /bundle" in lines and "EXPOSE 8080" in lines
    run = next(line for line in lines if line.startswith("RUN "))
    assert run.startswith("RUN python3 /bundle/wheels/pip-24.0-py3-none-any.whl/pip install")
    assert "--no-index --find-links /bundle/wheels" in run and "--target /opt/cloche" in run
    assert "ENV PYTHONPATH=/opt/cloche" in text
    assert lines[-1] == (
        'CMD ["python3", "-m", "cloche", "serve", "/bundle", "--host", "0.0.0.0", "--port", "8080"]'
    )


def test_without_wheels_both_install_from_the_index_and_cloche_from_its_wheel() -> None:
    assert docs.install_commands(with_wheels=False)[0] == (
        "python3 -m venv .venv && .venv/bin/pip install --find-links wheels --no-deps "
        "-r requirements.txt"
    )
    run = next(
        line
        for line in docs.dockerfile(python_version="3.11", pip_wheel=None).splitlines()
        if line.startswith("RUN ")
    )
    assert run.startswith("RUN python3 -m pip install") and "--no-index" not in run
    assert "--find-links /bundle/wheels" in run  # cloche's own wheel
