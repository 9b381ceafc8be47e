"""The search page's kernel websocket guard (``capstone.apps.server``) and the probe that showed the bug.

Without the guard, voila 0.5 misreads the legacy framing of a binary message as v1 and builds a
list of about 10**18 offsets: typing into the page over a websocket opened without the v1
subprotocol grew the server by tens of MB/s and stopped it answering (``tests/voila_probe.py
--unguarded`` shows it). The integration test runs the probe against ``python -m capstone.app``,
as ``make app`` starts it, on 127.0.0.1.
"""

import json
import struct

import pytest
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1
from voila_probe import VoilaServer, probe

from capstone.apps.server import (
    IDLE_TIMEOUT,
    NOTEBOOK,
    V1_PROTOCOL,
    GuardedKernelConnection,
    default_config,
    v1_framing_problem,
    voila_argv,
)

GROWTH_LIMIT_MB = 100  # the unguarded server grew past this within the probe's 15 s


def v1_message(n_buffers=0):
    parts = [json.dumps({"msg_type": "comm_msg"}).encode(), b"{}", b"{}", b"{}"]
    return serialize_msg_to_ws_v1(parts + [b"\0" * 10] * n_buffers, "shell")


def test_well_framed_v1_messages_pass():
    assert v1_framing_problem(v1_message()) is None
    assert v1_framing_problem(v1_message(n_buffers=3)) is None


@pytest.mark.parametrize(
    "message, problem",
    [
        ("{}", "not text"),
        (b"", "0 offsets"),
        # the legacy framing of a one-buffer message, read as v1: 864691128488689664 offsets
        (struct.pack("!III", 2, 12, 20) + b"{}" * 10, "864691128488689664 offsets"),
        ((10**6).to_bytes(8, "little") + b"\0" * 100, "1000000 offsets"),
        (v1_message()[:-10], "past the end"),
    ],
    ids=["text", "empty", "legacy framing", "a million offsets", "truncated"],
)
def test_badly_framed_messages_are_named_without_parsing_them(message, problem):
    assert problem in v1_framing_problem(message)


def test_the_app_listens_on_loopback_with_the_guard_and_culling_unless_told_otherwise():
    from voila.app import Voila

    app = Voila(config=default_config())
    app.parse_command_line(voila_argv(["--port=9999", "--MappingKernelManager.cull_interval=1"]))
    assert app.ip == "127.0.0.1" and not app.open_browser and app.port == 9999
    assert app.kernel_websocket_connection_class is GuardedKernelConnection
    culling = app.config.MappingKernelManager
    assert culling.cull_idle_timeout == IDLE_TIMEOUT and culling.cull_connected
    assert int(culling.cull_interval) == 1  # the command line wins (a string until used)
    assert app.extra_args == [str(NOTEBOOK)]
    assert voila_argv(["--port", "9000"]) == ["--port", "9000", str(NOTEBOOK)]
    assert voila_argv(["other.ipynb"]) == ["other.ipynb"]


@pytest.fixture(scope="module")
def app_server():
    server = VoilaServer(guarded=True)
    yield server
    assert not server.stop(), "processes left behind"


@pytest.mark.slow
def test_a_client_without_the_v1_protocol_is_refused_and_memory_stays_bounded(app_server):
    found = probe(app_server, "legacy", seconds=15, limit_mb=GROWTH_LIMIT_MB)
    assert not found["killed"] and found["peak_mb"] - found["start_mb"] < GROWTH_LIMIT_MB, found
    assert found["answers"], found  # a blocked event loop answers nothing
    assert found["refused"] == "HTTP 400: Kernel websocket needs the v1 protocol", found
    assert V1_PROTOCOL in app_server.log()  # the server says why, in one line


@pytest.mark.slow
def test_a_v1_client_gets_its_results_and_memory_stays_bounded(app_server):
    found = probe(app_server, "v1", seconds=15, limit_mb=GROWTH_LIMIT_MB)
    assert found["refused"] is None and found["images"] == 6, found  # the box's k = 6
    assert not found["killed"] and found["peak_mb"] - found["start_mb"] < GROWTH_LIMIT_MB, found
    assert found["answers"], found
