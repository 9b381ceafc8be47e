"""A class on one server: start the search page, bring a bounded class of visitors, measure.

``python -m capstone.apps.loadtest [--visitors 30] [--queries 3] [--pool 30] [--json PATH]``

Starts ``python -m capstone.app`` on 127.0.0.1 at a free port with a cap of ``visitors``
(``--ClassroomVoila.max_visitors``), waits until its pool of ready kernels is full, then:

1. **Visitors arrive**, one every ``gap`` seconds, each as a scripted browser: GET the page, open
   its kernel websocket (v1 protocol, as Voila's page does) and ask for the widgets' states.
   *Page ready* is the time from the GET to the search box's widget state having arrived (the
   moment a browser could draw it; the browser test shows the drawing itself).
2. **Everyone searches while all are connected**: each visitor types ``queries`` queries, at
   random moments within ``window`` seconds. *Search* is the time from typing (the text box's new
   value sent) to the results box's new tiles arriving (or, when nothing matches well, the line
   that says so), the search box's 0.25 s debounce included.
3. **Memory** of the server and all its kernels (the sum of their proportional set sizes, PSS:
   shared pages counted once), measured while all are connected.
4. **The cap**: one visitor more gets the "server is full" page (HTTP 503) and no kernel; a
   foreign ``Host``, a cross-site ``Origin`` and ``Sec-Fetch-Site: cross-site`` get HTTP 403 and
   no kernel.

Everything is bounded (visitors, queries, a timeout per step) and stops by itself; the server's
process group is stopped at the end. The result is one JSON object (``--json`` writes it too).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
QUERIES = ("red boat", "a dog on the grass", "yellow flower", "kite in the sky",
           "a car at night", "fish in the water", "snow on a house", "white ball")
STEP_TIMEOUT = 120  # seconds any one step may take before the test gives up on it


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of ``values``; ``None`` when there are none."""
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, max(0, int(-(-q * len(values) // 100)) - 1))]


class Server:
    """``python -m capstone.app`` on 127.0.0.1 in its own process group, logging to a file."""

    def __init__(self, cap: int, pool: int, extra_args=()):
        import psutil

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="capstone-loadtest-", suffix=".log")[1])
        command = [sys.executable, "-m", "capstone.app", f"--port={self.port}",
                   "--Voila.port_retries=0", f"--ClassroomVoila.max_visitors={cap}",
                   f"--pool_size={pool}", *extra_args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.ps = psutil.Process(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_pool(self, pool: int, timeout: float) -> float:
        """Seconds until the pool of ready kernels is full and idle (``pool == 0``: answering)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped:\n{self.log()[-3000:]}")
            if pool == 0 and self.answers():
                return time.monotonic() - started
            if pool and "Kernel pool of" in self.log() and self.settled():
                return time.monotonic() - started  # started, and done running the page
            time.sleep(0.3)
        raise TimeoutError(f"the server's pool was not ready in {timeout:.0f} s:\n"
                           f"{self.log()[-3000:]}")

    def settled(self, seconds: float = 3.0, cpu: float = 0.3) -> bool:
        """Whether the kernels used under ``cpu`` seconds of CPU in all over ``seconds``."""
        before = _cpu_seconds(self)
        time.sleep(seconds)
        return _cpu_seconds(self) - before < cpu

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/voila/static/voila.js", timeout=5):
                return True
        except OSError:
            return False

    def kernels(self) -> list:
        """The server's kernel processes."""
        return kernel_processes(self.ps)

    def memory_mb(self) -> dict:
        """PSS and RSS of the server and its kernels, in MB (PSS counts shared pages once)."""
        import psutil

        pss = rss = 0
        processes = [self.ps, *self.kernels()]
        for process in processes:
            try:
                info = process.memory_full_info()
            except psutil.Error:
                continue
            pss += getattr(info, "pss", info.rss)
            rss += info.rss
        return {"pss_mb": round(pss / 2**20), "rss_mb": round(rss / 2**20),
                "kernels": len(processes) - 1}

    def stop(self, timeout: float = 20) -> None:
        """Stop the server and its kernels (SIGTERM, then SIGKILL to the group)."""
        stop_server(self.process, [self.ps, *self.kernels()], timeout)


def stop_server(process, processes: list, timeout: float) -> list:
    """Stop a server started in its own process group (``process``, a ``subprocess.Popen``) and
    ``processes`` (psutil: the server and its kernels); return those still alive after that.

    SIGTERM first; a server whose event loop is blocked never handles it, so its group gets
    SIGKILL; kernels in their own session, orphaned by that, are killed one by one.
    """
    import psutil

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout)
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for each in alive:
        each.kill()
    _, alive = psutil.wait_procs(alive, timeout=timeout)
    return alive


def kernel_processes(process) -> list:
    """The Jupyter kernels started below ``process`` (a ``psutil.Process``): a server's."""
    import psutil

    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "ipykernel_launcher" in " ".join(_cmdline(p))]


def _cmdline(process) -> list:
    try:
        return process.cmdline()
    except Exception:  # noqa: BLE001 - gone or not ours
        return []


def get(url: str, headers=None, timeout: float = STEP_TIMEOUT) -> tuple[int, str]:
    """Status and body of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


# -- one visitor ------------------------------------------------------------------------------
def _message(session: str, msg_type: str, content: dict, metadata=None) -> dict:
    header = {"msg_id": uuid.uuid4().hex, "username": "visitor", "session": session,
              "msg_type": msg_type, "version": "5.3", "date": ""}
    return {"header": header, "parent_header": {}, "metadata": metadata or {},
            "content": content, "channel": "shell"}


def _encode(msg: dict) -> bytes:
    from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1

    parts = [json.dumps(msg[key]).encode()
             for key in ("header", "parent_header", "metadata", "content")]
    return serialize_msg_to_ws_v1(parts, msg["channel"])


def _decode(raw) -> dict:
    from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1

    from capstone.apps.server import v1_framing_problem

    if isinstance(raw, str):
        return json.loads(raw)
    problem = v1_framing_problem(raw)  # the parser trusts the message's offset count
    if problem:
        raise ValueError(problem)
    _, parts = deserialize_msg_from_ws_v1(raw)
    return {key: json.loads(part)
            for key, part in zip(("header", "parent_header", "metadata", "content"), parts)}


class Visitor:
    """One student: the page, its kernel websocket, the search box's widgets."""

    def __init__(self, url: str):
        self.url, self.session = url, uuid.uuid4().hex
        self.ws = self.text = self.results = self.message = None
        self.page_ready = None
        self.searches: list[float] = []
        self.slowest: list[tuple] = []  # (seconds, query, which of this visitor's searches)
        self.inbox: asyncio.Queue = asyncio.Queue()

    async def arrive(self) -> None:
        """GET the page, connect to its kernel, receive the widgets; sets ``page_ready``."""
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        started = time.monotonic()
        status, page = await asyncio.to_thread(get, self.url + "/")
        found = re.search(r'kernelId": "([0-9a-f-]+)"', page)
        if status != 200 or not found:
            raise RuntimeError(f"the page answered {status} without a kernel: {page[:200]!r}")
        channels = self.url.replace("http", "ws", 1) + f"/api/kernels/{found.group(1)}/channels"
        request = HTTPRequest(f"{channels}?session_id={self.session}",
                              connect_timeout=STEP_TIMEOUT, request_timeout=STEP_TIMEOUT)
        self.ws = await websocket_connect(request, subprotocols=[V1_PROTOCOL])
        asyncio.get_running_loop().create_task(self._receive())
        control = uuid.uuid4().hex
        await self._send("comm_open", {"comm_id": control, "data": {},
                                       "target_name": "jupyter.widget.control"},
                         {"version": "1.0.0"})
        await self._send("comm_msg", {"comm_id": control, "data": {"method": "request_states"}})
        reply = await self._wait(lambda m: m["content"].get("comm_id") == control)
        states = reply["content"]["data"]["states"]
        for comm_id, value in states.items():
            state = value["state"]
            if state.get("_model_name") == "TextModel":
                self.text = comm_id
            if "capstone-results" in state.get("_dom_classes", ()):
                self.results = comm_id
            if "capstone-message" in state.get("_dom_classes", ()):
                self.message = comm_id
        if None in (self.text, self.results, self.message):
            raise RuntimeError(f"the page has no search box ({len(states)} widgets)")
        self.page_ready = time.monotonic() - started

    async def search(self, query: str) -> float:
        """Type ``query``; seconds until the results box shows new tiles, or the message line
        says that nothing matches ``query`` (it names the query then)."""
        while not self.inbox.empty():
            self.inbox.get_nowait()
        started = time.monotonic()
        await self._send("comm_msg", {"comm_id": self.text, "data": {
            "method": "update", "state": {"value": query}, "buffer_paths": []}},
            {"version": "2.1.0"})
        named = html.escape(repr(query))

        def answered(message) -> bool:
            if message["header"]["msg_type"] != "comm_msg":
                return False
            comm_id, state = message["content"].get("comm_id"), message["content"]["data"].get(
                "state", {})
            return (comm_id == self.results and "children" in state
                    or comm_id == self.message and named in str(state.get("value", "")))

        await self._wait(answered)
        seconds = time.monotonic() - started
        self.searches.append(seconds)
        self.slowest.append((round(seconds, 3), query, len(self.searches)))
        return seconds

    async def leave(self) -> None:
        if self.ws is not None:
            self.ws.close()

    async def _send(self, msg_type, content, metadata=None) -> None:
        await self.ws.write_message(_encode(_message(self.session, msg_type, content, metadata)),
                                    binary=True)

    async def _receive(self) -> None:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                await self.inbox.put(None)
                return
            await self.inbox.put(_decode(raw))

    async def _wait(self, wanted) -> dict:
        async def first():
            while True:
                message = await self.inbox.get()
                if message is None:
                    raise ConnectionError("the server closed the kernel websocket")
                if wanted(message):
                    return message

        return await asyncio.wait_for(first(), STEP_TIMEOUT)


# -- the class --------------------------------------------------------------------------------
async def run_class(server: Server, visitors: int, queries: int, gap: float, window: float,
                    seed: int) -> dict:
    """Steps 1-4 of the module docstring against a started server; the measurements."""
    rng = random.Random(seed)
    group = [Visitor(server.url) for _ in range(visitors)]

    failures = []

    async def arrive(index, visitor):
        await asyncio.sleep(index * gap)
        try:
            await visitor.arrive()
        except (OSError, RuntimeError, asyncio.TimeoutError, ValueError) as error:
            failures.append(f"{type(error).__name__}: {error}"[:200])
            await visitor.leave()
            visitor.ws = None

    try:
        await asyncio.gather(*(arrive(i, v) for i, v in enumerate(group)))
        connected_memory = server.memory_mb()

        async def searches(visitor):
            moments = sorted(rng.uniform(0, window) for _ in range(queries))
            started = time.monotonic()
            last = None
            for moment in moments:
                await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
                last = rng.choice([query for query in QUERIES if query != last])  # a new value
                try:
                    await visitor.search(last)
                except (asyncio.TimeoutError, ConnectionError) as error:
                    failures.append(f"search {last!r}: {type(error).__name__}")
                    visitor.searches.append(math.inf)  # an unanswered search: infinitely slow

        await asyncio.gather(*(searches(v) for v in group if v.ws is not None))
        searching_memory = server.memory_mb()
        kernels_before = len(server.kernels())
        full_status, full_page = await asyncio.to_thread(get, server.url + "/")
        refusals = {}
        for name, headers in (("foreign_host", {"Host": "evil.example"}),
                              ("cross_site_origin", {"Origin": "http://evil.example"}),
                              ("cross_site_fetch", {"Sec-Fetch-Site": "cross-site"})):
            refusals[name] = (await asyncio.to_thread(get, server.url + "/", headers))[0]
        await asyncio.sleep(1.5)  # a kernel started by any of them would show by now
        kernels_after = len(server.kernels())
    finally:
        for visitor in group:
            await visitor.leave()
    # a visit that never got its search box counts as infinitely slow
    page_ready = [math.inf if v.page_ready is None else v.page_ready for v in group]
    search = [s for v in group for s in v.searches] or [math.nan]
    memory = max(connected_memory, searching_memory, key=lambda m: m["pss_mb"])
    return {
        "visitors": visitors, "failures": len(failures), "failure_examples": failures[:3],
        "queries": sum(len(v.searches) for v in group),
        "page_ready_p50_s": round(percentile(page_ready, 50), 3),
        "page_ready_p95_s": round(percentile(page_ready, 95), 3),
        "page_ready_max_s": round(max(page_ready), 3),
        "search_p50_s": round(percentile(search, 50), 3),
        "search_p95_s": round(percentile(search, 95), 3),
        "search_max_s": round(max(search), 3),
        "search_slowest": sorted((s for v in group for s in v.slowest), reverse=True)[:5],
        "memory_pss_mb": memory["pss_mb"], "memory_rss_mb": memory["rss_mb"],
        "kernels": memory["kernels"],
        "one_more_status": full_status,
        "one_more_full_page": "server is full" in full_page,
        "refused_statuses": refusals,
        "kernels_started_by_refused": kernels_after - kernels_before,
    }


def load_test(visitors: int = 30, queries: int = 3, pool: int = 30, gap: float = 0.5,
              window: float = 30.0, seed: int = 0, pool_timeout: float = 1200) -> dict:
    """Start the server, run :func:`run_class`, stop the server; the measurements.

    Besides :func:`run_class`'s keys: ``pool_ready_s`` (start until the pool was full), the
    ``cpu_s`` of the server and its kernels during the class (user + system), and ``wall_s``.
    """
    server = Server(cap=visitors, pool=min(pool, visitors))
    try:
        pool_ready = server.wait_for_pool(min(pool, visitors), pool_timeout)
        cpu_before = _cpu_seconds(server)
        started = time.monotonic()
        found = asyncio.run(asyncio.wait_for(
            run_class(server, visitors, queries, gap, window, seed),
            visitors * gap + window + 6 * STEP_TIMEOUT))
        found.update(pool_ready_s=round(pool_ready, 1),
                     wall_s=round(time.monotonic() - started, 1),
                     cpu_s=round(_cpu_seconds(server) - cpu_before, 1),
                     warnings=_warnings(server.log()))
    finally:
        server.stop()
    return found


def _cpu_seconds(server: Server) -> float:
    total = 0.0
    for process in [server.ps, *server.kernels()]:
        try:
            times = process.cpu_times()
        except Exception:  # noqa: BLE001 - a kernel that just ended
            continue
        total += times.user + times.system
    return total


def _warnings(log: str) -> list[str]:
    """The server log's warnings other than the refusals the test itself asked for."""
    lines = [line for line in log.splitlines() if "WARNING" in line or "Traceback" in line]
    return [line[:200] for line in lines if "Refused" not in line and "Full:" not in line]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capstone.apps.loadtest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=30, help="the class size and the cap")
    parser.add_argument("--queries", type=int, default=3, help="queries per visitor")
    parser.add_argument("--pool", type=int, default=30,
                        help="kernels kept ready (the server's default: one per visitor)")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between arrivals")
    parser.add_argument("--window", type=float, default=30.0,
                        help="seconds over which each visitor's queries are spread")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if not 1 <= args.visitors <= 200 or not 0 <= args.queries <= 100:
        print("error: --visitors must be 1-200 and --queries 0-100", file=sys.stderr)
        return 2
    found = load_test(args.visitors, args.queries, args.pool, args.gap, args.window)
    text = json.dumps(found, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
