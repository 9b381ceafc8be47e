"""Probe: type into the search page over a raw kernel websocket and watch the server's memory.

    python tests/voila_probe.py [--protocol legacy|v1] [--unguarded] [--seconds S] [--limit-mb M]

It starts the search page on 127.0.0.1 at a free port (``python -m capstone.app``, or plain
``voila`` with ``--unguarded``: the setup before the websocket guard), loads the page (which
starts a kernel and runs ``notebooks/app.ipynb``), then opens the page's kernel websocket as a
scripted client: without any subprotocol (``legacy``, as old clients do) or with
``v1.kernel.websocket.jupyter.org`` (``v1``, as JupyterLab 4 and Voila's page do). It asks for
the widgets' states, types "red boat" into the search box and watches the server's resident
memory for ``S`` seconds. A watchdog kills the server's process group (SIGKILL) as soon as it has
grown by more than ``M`` MB, so a runaway server never takes the machine down.

It prints one JSON line: whether the handshake was refused, the image widgets the query opened,
the server's memory at the start and at its peak, and whether it still answered HTTP afterwards.
The exit status is 0 when the growth stayed under the limit and the server still answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_helpers import free_port  # noqa: E402

from capstone.apps.loadtest import kernel_processes, stop_server  # noqa: E402
from capstone.apps.server import v1_framing_problem  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
QUERY = "red boat"
PAGE_TIMEOUT = 180  # a first run generates the sample and trains the app's model


class VoilaServer:
    """The search page served on 127.0.0.1, in its own process group, logging to a file."""

    def __init__(self, guarded: bool = True, extra_args=(), env: dict | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="voila-probe-", suffix=".log")[1])
        args = [f"--port={self.port}", "--Voila.port_retries=0", *extra_args]
        if guarded and not any(arg.startswith("--pool_size") for arg in args):
            args.append("--pool_size=1")  # one kernel kept ready, not a class's worth
        if guarded:
            command = [sys.executable, "-m", "capstone.app", *args]
        else:  # `make app` before the guard
            voila = Path(sys.executable).with_name("voila")
            command = [str(voila), "--Voila.ip=127.0.0.1", "--no-browser", *args]
            command.append(str(ROOT / "notebooks" / "app.ipynb"))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.ps = psutil.Process(self.process.pid)
        self.wait_until_answering()

    def answers(self, timeout: float = 5) -> bool:
        """Whether the server serves a static file within ``timeout`` seconds."""
        try:
            url = f"{self.base_url}/voila/templates/lab/static/voila.js"
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_until_answering(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.answers(timeout=2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"voila did not start:\n{self.log()[-3000:]}")
            time.sleep(0.3)

    def rss_mb(self) -> float:
        """Resident memory of the server process (its kernels not included), in MB."""
        return self.ps.memory_info().rss / 2**20

    def kernels(self) -> list[psutil.Process]:
        """The server's kernel processes."""
        return kernel_processes(self.ps)

    def kill(self) -> None:
        """SIGKILL the server's process group now (what the watchdog does)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15) -> list[psutil.Process]:
        """Stop the server and its kernels; return the processes still alive."""
        return stop_server(self.process, [self.ps, *self.kernels()], timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Watchdog(threading.Thread):
    """Samples the server's memory every 0.1 s; kills it once it grew by over ``limit_mb``."""

    def __init__(self, server: VoilaServer, limit_mb: float):
        super().__init__(daemon=True)
        self.server, self.limit_mb = server, limit_mb
        self.start_mb = self.peak_mb = server.rss_mb()
        self.killed = False
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.wait(0.1):
            try:
                self.peak_mb = max(self.peak_mb, self.server.rss_mb())
            except psutil.NoSuchProcess:
                return
            if self.peak_mb - self.start_mb > self.limit_mb:
                self.killed = True
                self.server.kill()
                return

    def stop(self):
        self._stop_event.set()
        self.join()


def message(session: str, msg_type: str, content: dict, metadata=None, channel="shell") -> dict:
    """A kernel message from the client, as a front end builds it."""
    header = {
        "msg_id": uuid.uuid4().hex, "username": "probe", "session": session,
        "msg_type": msg_type, "version": "5.3", "date": "",
    }  # fmt: skip
    return {
        "header": header, "parent_header": {}, "metadata": metadata or {}, "content": content,
        "channel": channel, "buffers": [],
    }  # fmt: skip


def encode(msg: dict, protocol: str):
    """``msg`` framed for the websocket: JSON text (legacy) or v1 binary."""
    if protocol == "legacy":
        return json.dumps({key: value for key, value in msg.items() if key != "buffers"})
    parts = [json.dumps(msg[key]).encode() for key in ("header", "parent_header", "metadata")]
    parts.append(json.dumps(msg["content"]).encode())
    return serialize_msg_to_ws_v1(parts, msg["channel"])


def decode(raw, protocol: str) -> dict:
    """A message from the server, whatever its framing; buffers dropped."""
    if isinstance(raw, str):
        return json.loads(raw)
    if protocol == "legacy":
        return deserialize_binary_message(raw)
    problem = v1_framing_problem(raw)  # the parser below trusts the message's offset count
    if problem:
        raise ValueError(problem)
    _, parts = deserialize_msg_from_ws_v1(raw)
    keys = ("header", "parent_header", "metadata", "content")
    return {key: json.loads(part) for key, part in zip(keys, parts)}


def load_page(base_url: str) -> str:
    """The page's kernel id, once Voila has run the notebook in a new kernel."""
    page = urllib.request.urlopen(base_url + "/", timeout=PAGE_TIMEOUT).read().decode()
    return re.search(r'kernelId": "([0-9a-f-]+)"', page).group(1)


async def type_query(base_url: str, kernel_id: str, protocol: str, seconds: float) -> dict:
    """Open the page's kernel websocket with ``protocol``, type ``QUERY``.

    Returns ``refused`` (the handshake's error, or ``None``), ``widgets`` (how many the page
    had) and ``images`` (the image widgets opened or given a picture within ``seconds`` after
    typing).
    """
    session = uuid.uuid4().hex
    url = base_url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(f"{url}?session_id={session}", connect_timeout=10, request_timeout=30)
    subprotocols = [V1_PROTOCOL] if protocol == "v1" else None
    try:
        ws = await websocket_connect(request, subprotocols=subprotocols)
    except HTTPClientError as error:
        return {"refused": str(error), "widgets": 0, "images": 0}

    async def receive(seconds, until=None) -> list[dict]:
        received, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                raw = await asyncio.wait_for(ws.read_message(), 0.5)
            except asyncio.TimeoutError:
                continue
            if raw is None:  # closed by the server
                break
            received.append(decode(raw, protocol))
            if until and until(received[-1]):
                break
        return received

    async def send(msg_type, content, metadata=None):
        await ws.write_message(
            encode(message(session, msg_type, content, metadata), protocol),
            binary=protocol == "v1",
        )

    control = uuid.uuid4().hex
    await send("comm_open", {"comm_id": control, "target_name": "jupyter.widget.control",
                             "data": {}}, {"version": "1.0.0"})  # fmt: skip
    await send("comm_msg", {"comm_id": control, "data": {"method": "request_states"}})
    replies = await receive(30, lambda m: m["content"].get("comm_id") == control)
    states = replies[-1]["content"]["data"]["states"] if replies else {}
    text = [key for key, value in states.items() if value["state"]["_model_name"] == "TextModel"]
    if not text:
        ws.close()
        return {"refused": None, "widgets": len(states), "images": 0}
    update = {"method": "update", "state": {"value": QUERY}, "buffer_paths": []}
    await send("comm_msg", {"comm_id": text[0], "data": update}, {"version": "2.1.0"})
    received = await receive(seconds)
    ws.close()
    # the images shown: new image widgets, or the page's own given a new picture (the box reuses
    # its tiles), each message carrying the picture as a binary buffer
    known = {key for key, value in states.items() if value["state"]["_model_name"] == "ImageModel"}
    images = {
        m["content"]["comm_id"] for m in received
        if m["header"]["msg_type"] == "comm_open"
        and m["content"]["data"]["state"].get("_model_name") == "ImageModel"
        or m["header"]["msg_type"] == "comm_msg" and m["content"].get("comm_id") in known
        and ["value"] in m["content"]["data"].get("buffer_paths", [])
    }  # fmt: skip
    return {"refused": None, "widgets": len(states), "images": len(images)}


def probe(server: VoilaServer, protocol: str = "legacy", seconds: float = 15,
          limit_mb: float = 100) -> dict:  # fmt: skip
    """Load the page, then run :func:`type_query` under a :class:`Watchdog`; the findings.

    Returns the keys of :func:`type_query` and ``start_mb``, ``peak_mb`` (the server's memory
    once the page was loaded, and at its highest), ``killed`` (by the watchdog) and
    ``answers`` (the server still serves HTTP).
    """
    watchdog = None
    try:
        kernel_id = load_page(server.base_url)
        watchdog = Watchdog(server, limit_mb)
        watchdog.start()
        typing = type_query(server.base_url, kernel_id, protocol, seconds)
        found = asyncio.run(asyncio.wait_for(typing, seconds + 90))
    except (OSError, asyncio.TimeoutError) as error:  # the server died or stopped answering
        found = {"refused": None, "widgets": 0, "images": 0, "error": repr(error)}
    finally:
        if watchdog is not None:
            watchdog.stop()
    return {
        "protocol": protocol, **found, "start_mb": round(watchdog.start_mb if watchdog else 0),
        "peak_mb": round(watchdog.peak_mb if watchdog else 0),
        "killed": bool(watchdog and watchdog.killed), "answers": server.answers(),
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=["legacy", "v1"], default="legacy")
    parser.add_argument("--unguarded", action="store_true", help="plain voila, no guard")
    parser.add_argument("--seconds", type=float, default=15, help="watch after typing")
    parser.add_argument("--limit-mb", type=float, default=100, help="allowed growth")
    args = parser.parse_args(argv)
    server = VoilaServer(guarded=not args.unguarded)
    try:
        found = probe(server, args.protocol, args.seconds, args.limit_mb)
    finally:
        left = server.stop()
    found["left_running"] = [process.pid for process in left]
    print(json.dumps(found))
    bounded = not found["killed"] and found["peak_mb"] - found["start_mb"] <= args.limit_mb
    return 0 if bounded and found["answers"] and not left else 1


if __name__ == "__main__":
    sys.exit(main())
