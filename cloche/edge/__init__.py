"""Edge serving: a bundle served with no store, no registry and no network, and its log synced.

This package and what it imports must run in a bundle's lean runtime (numpy, orjson, uvicorn and
the model's framework): no pydantic, SQLAlchemy, pyarrow or FastAPI. A test imports it with
those blocked.
"""
