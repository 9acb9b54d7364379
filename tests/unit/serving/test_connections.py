import pickle

from cloche.config import ServingSettings
from cloche.serving.connections import EDGE_LIMITS, GuardedHttpTools, uvicorn_options


def test_the_edge_server_gets_cloche_ups_default_limits() -> None:
    defaults = ServingSettings()
    assert {
        "max_connections": defaults.max_connections,
        "header_timeout": defaults.header_timeout_seconds,
        "body_timeout": defaults.read_timeout_seconds,
        "keep_alive": defaults.keep_alive_seconds,
    } == EDGE_LIMITS


def test_the_options_pickle_into_worker_processes() -> None:
    options = uvicorn_options(ServingSettings(header_timeout_seconds=3, read_timeout_seconds=7))
    http = pickle.loads(pickle.dumps(options["http"]))
    assert http.func is GuardedHttpTools
    assert http.keywords == {"header_timeout": 3.0, "body_timeout": 7.0}
    assert options["limit_concurrency"] == 1000
