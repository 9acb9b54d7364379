"""The bare baseline for bench/serving.py: parse JSON, predict, answer JSON. Nothing else.

Run by uvicorn with httptools and uvloop, the same HTTP stack as cloche.
"""

from __future__ import annotations

import os

import joblib
import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

model = joblib.load(os.environ["BASELINE_MODEL"])


async def predict(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    X = np.asarray(payload["instances"], dtype=np.float64)
    body = orjson.dumps({"predictions": model.predict(X).tolist()})
    return Response(body, media_type="application/json")


app = Starlette(routes=[Route("/v1/models/{name}:predict", predict, methods=["POST"])])
