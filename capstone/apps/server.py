"""The search page: ``notebooks/app.ipynb`` served by Voila on 127.0.0.1 (``make app``).

``python -m capstone.apps.server [VOILA OPTIONS] [NOTEBOOK]`` starts Voila (:class:`ClassroomVoila`)
with settings of its own (:func:`default_config`); a Voila config file or the command line
overrides them:

- it listens on 127.0.0.1 only, and opens no browser;
- a class at once: :data:`POOL_SIZE` kernels (one per place) wait with the page already run
  (Voila's ``preheat_kernel``), so a visitor's search box appears without waiting for Python to
  start and the model to load; filling the pool takes a minute or two at start (the log says
  "Kernel pool of app.ipynb is filled"); ``--pool_size=N`` keeps fewer ready;
- at most :data:`MAX_VISITORS` visitors hold a kernel (``--ClassroomVoila.max_visitors=N``);
  the next one gets a "the server is full, try again in a minute" page (HTTP 503) and no kernel,
  and the waiting kernels never take the total past the cap;
- a request with a foreign ``Host`` (anything but this machine's loopback names) or from another
  site (``Origin``, ``Sec-Fetch-Site``) gets HTTP 403 and starts nothing;
- each visitor's kernel is shut down after 10 minutes without activity, connected or not
  (Voila already shuts it down when the page is closed normally; culling covers the rest:
  crashed tabs, lost connections, tabs left open);
- the kernel websocket goes through :class:`GuardedKernelConnection`;
- the page is Voila's lab template without its CDN links (``capstone/apps/jupyter``), loads only
  the widgets' JupyterLab extension, and every asset comes from this server; kernels talk to it
  over IPC sockets, not TCP; the served notebook is signed in memory (trusted, nothing written).

One training at a time is :func:`capstone.pipeline.prepared.load_or_train`'s lock: with no saved
model, the first kernel trains and the others say they wait for it, then load its model.

Why the guard: voila 0.5's websocket handler reads the header of every binary message it sends
as if it were framed with the ``v1.kernel.websocket.jupyter.org`` protocol. A client that does
not ask for that protocol gets the legacy framing, whose first 8 bytes, read as v1, give an
offset count near 10**18; voila then builds a list of that many offsets on the event loop. The
server grows by tens of MB/s until it is killed, and ignores SIGTERM meanwhile. Any widget
message with a buffer (an image) triggers it.
"""

from __future__ import annotations

import contextvars
import html
import os
import secrets
import struct
import sys
from pathlib import Path
from urllib.parse import urlsplit

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web
from tornado.httputil import split_host_and_port
from traitlets import Integer, List, Unicode
from traitlets.config import Config

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
MAX_PARTS = 1024  # header, parent header, metadata, content and up to 1,020 buffers
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "app.ipynb"
IDLE_TIMEOUT = 600  # seconds without kernel activity before a visitor's kernel is shut down
TEMPLATES = Path(__file__).resolve().parent / "jupyter"  # voila/templates/capstone
MAX_VISITORS = 30  # a class; each kernel: about 75 MB (PSS) at COCO size (README: instructors)
POOL_SIZE = MAX_VISITORS  # kernels kept ready, the page run: a class arriving at once meets them
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
SAME_SITE = ("same-origin", "none")  # Sec-Fetch-Site of the page itself, or a typed address
# the widgets: ipywidgets' front end and the widget manager Voila ships for it
WIDGETS_EXTENSIONS = ["@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8"]
FULL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>The server is full</title>
<meta http-equiv="refresh" content="60"></head><body style="font-family: sans-serif; margin: 3em">
<h1>The server is full, try again in a minute</h1>
<p>All {cap} places of this search page are taken. This page tries again by itself in a minute.
</p></body></html>
"""
REFUSED_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Not served</title>
</head><body style="font-family: sans-serif; margin: 3em"><h1>Not served</h1><p>{reason}</p>
</body></html>
"""
REFUSED = (
    f"This server speaks only the {V1_PROTOCOL} kernel websocket protocol: "
    f"open the websocket with subprotocols=['{V1_PROTOCOL}'] (JupyterLab 4 and Voila's page do)."
)


def v1_framing_problem(message) -> str | None:
    """Why ``message`` is not a well-framed v1 kernel websocket message (``None`` if it is).

    Checks only what bounds the work of jupyter_server's v1 parser: the offset count, which
    it trusts, must fit the message and ``MAX_PARTS``, and the offsets must stay in order and
    inside the message.
    """
    if not isinstance(message, bytes):
        return f"send binary {V1_PROTOCOL} messages, not text"
    count = int.from_bytes(message[:8], "little")
    # channel + header, parent header, metadata, content: at least 6 offsets
    if not 6 <= count <= MAX_PARTS + 2 or 8 * (count + 1) > len(message):
        return f"bad {V1_PROTOCOL} framing: {count} offsets in a {len(message)}-byte message"
    offsets = struct.unpack_from(f"<{count}Q", message, 8)
    if any(b < a for a, b in zip(offsets, offsets[1:])) or offsets[-1] > len(message):
        return f"bad {V1_PROTOCOL} framing: offsets out of order or past the end"
    return None


class GuardedKernelConnection(ZMQChannelsWebsocketConnection):
    """A kernel websocket connection that requires the v1 protocol and bounds its parsing.

    A handshake that does not offer ``v1.kernel.websocket.jupyter.org`` is refused with HTTP
    400 before the upgrade: the legacy framing is what voila 0.5 misreads, and jupyter_server's
    legacy parser also trusts a count from the client. Each incoming v1 message is checked by
    :func:`v1_framing_problem` before jupyter_server parses it; a bad one closes the socket.
    An accepted handshake also sets the ``_xsrf`` cookie, which Voila's page needs to ask for
    its kernel's shutdown when it unloads.
    """

    async def prepare(self):
        """Refuse a handshake without the v1 subprotocol, then prepare as usual."""
        handler = self.websocket_handler
        offered = handler.request.headers.get("Sec-WebSocket-Protocol", "")
        if V1_PROTOCOL not in [protocol.strip() for protocol in offered.split(",")]:
            self.log.warning("Refused a kernel websocket without %s", V1_PROTOCOL)
            handler.set_status(400, reason="Kernel websocket needs the v1 protocol")
            handler.set_header("Content-Type", "text/plain; charset=UTF-8")
            # Finish, not HTTPError: Voila's error page template is missing for this handler
            raise web.Finish(REFUSED + "\n")
        # Voila's page sends this cookie's token when it unloads, asking for its kernel's
        # shutdown; the page itself never sets it, so the request was refused (403)
        handler.xsrf_token  # noqa: B018 (reading it sets the _xsrf cookie)
        await super().prepare()

    def handle_incoming_message(self, incoming_msg) -> None:
        """Pass a well-framed v1 message on to the kernel; close the socket on anything else."""
        problem = v1_framing_problem(incoming_msg)
        if problem is None and self.subprotocol != V1_PROTOCOL:
            problem = f"the websocket was opened without {V1_PROTOCOL}"
        if problem is not None:
            self.log.warning("Closing kernel websocket %s: %s", self.kernel_id, problem)
            self.websocket_handler.close(1008, problem[:120])  # a close reason is <= 123 bytes
            return
        super().handle_incoming_message(incoming_msg)


def default_config() -> Config:
    """The app's Voila settings; a config file or the command line overrides each of them."""
    config = Config()
    config.Voila.ip = "127.0.0.1"
    config.Voila.open_browser = False
    config.Voila.kernel_websocket_connection_class = GuardedKernelConnection
    config.VoilaConfiguration.template = "capstone"
    config.VoilaConfiguration.preheat_kernel = True
    config.VoilaConfiguration.default_pool_size = POOL_SIZE
    config.VoilaConfiguration.extension_allowlist = WIDGETS_EXTENSIONS
    config.KernelManager.transport = "ipc"  # no kernel port on the network, no warning about it
    config.MappingKernelManager.cull_idle_timeout = IDLE_TIMEOUT
    config.MappingKernelManager.cull_interval = 60
    config.MappingKernelManager.cull_connected = True  # a tab left open holds a kernel too
    # signatures in memory under a per-run key: the shipped notebook is trusted, nothing written
    config.NotebookNotary.db_file = ":memory:"
    config.NotebookNotary.secret = secrets.token_bytes(32)
    return config


def host_problem(request, allowed_hosts) -> str | None:
    """Why a page request is not served (``None`` if it is): a foreign host or another site."""
    host, _port = split_host_and_port(request.host.lower())
    if host not in allowed_hosts:
        return f"this server answers only for {allowed_hosts[0]}, not {host!r}"
    origin = request.headers.get("Origin")
    if origin is not None and (urlsplit(origin.lower()).hostname or origin) not in [
            name.strip("[]") for name in allowed_hosts]:
        return "requests from other sites are not served"
    if request.headers.get("Sec-Fetch-Site", "none").lower() not in SAME_SITE:
        return "requests from other sites are not served"
    return None


#: The visit being served (a dict that gets its ``"kernel"``), for :class:`Visitors`.
_VISIT = contextvars.ContextVar("visit", default=None)


class Visitors:
    """Who holds a kernel: the kernels handed to visitors, and the visits waiting for one.

    Voila's pool keeps ``pool_size`` kernels with the page already run; :meth:`fill` lets it grow
    only up to the cap, so visitors and waiting kernels together never pass ``cap``.
    """

    def __init__(self, kernel_manager, cap: int, pool_size: int):
        self.kernel_manager, self.cap, self.pool_size = kernel_manager, cap, pool_size
        self.kernels, self.arriving, self.closing = set(), 0, False
        if hasattr(kernel_manager, "fill_if_needed"):  # preheated: Voila's pool
            self._fill = kernel_manager.fill_if_needed
            kernel_manager.fill_if_needed = self.fill
            get_rendered = kernel_manager.get_rendered_notebook

            async def get_rendered_notebook(*args, **kwargs):
                task, cache, kernel_id = await get_rendered(*args, **kwargs)
                self.handed_out(kernel_id)
                return task, cache, kernel_id

            kernel_manager.get_rendered_notebook = get_rendered_notebook
            shutdown = kernel_manager.shutdown_kernel

            async def shutdown_kernel(kernel_id, *args, **kwargs):  # a visitor left: refill
                result = await shutdown(kernel_id, *args, **kwargs)
                if kernel_id in self.kernels:
                    self.kernels.discard(kernel_id)
                    self.fill(notebook_name=getattr(kernel_manager, "notebook_path", None))
                return result

            kernel_manager.shutdown_kernel = shutdown_kernel
        start = kernel_manager.start_kernel  # the page's own start (an empty pool), not the pool's

        async def start_kernel(*args, **kwargs):
            kernel_id = await start(*args, **kwargs)
            self.handed_out(kernel_id)
            return kernel_id

        kernel_manager.start_kernel = start_kernel
        shutdown_all = kernel_manager.shutdown_all

        async def shutdown_all_kernels(*args, **kwargs):
            self.closing = True
            return await shutdown_all(*args, **kwargs)

        kernel_manager.shutdown_all = shutdown_all_kernels

    def count(self) -> int:
        """Visitors holding a kernel or about to get one."""
        self.kernels &= set(self.kernel_manager.list_kernel_ids())
        return len(self.kernels) + self.arriving

    def handed_out(self, kernel_id: str) -> None:
        """A visit got its kernel: it counts, and it is as fresh as the visit for the culler."""
        self.kernels.add(kernel_id)
        try:  # a kernel that waited in the pool longer than the idle timeout is not culled
            # before the visitor's page connects to it
            from jupyter_server._tz import utcnow

            self.kernel_manager.get_kernel(kernel_id).last_activity = utcnow()
        except KeyError:
            pass
        visit = _VISIT.get()
        if visit is not None and "kernel" not in visit:
            visit["kernel"] = kernel_id
            self.arriving -= 1

    def fill(self, delay=None, notebook_name=None, **kwargs) -> None:
        """Voila's pool refill, with the pool no larger than the places left under the cap."""
        if self.closing:
            return
        room = max(0, self.cap - self.count())
        manager = self.kernel_manager
        manager.kernel_pools_config = {"default": {
            "pool_size": min(self.pool_size, room),
            "kernel_env_variables": manager.default_env_variables}}
        self._fill(delay=delay, notebook_name=notebook_name, **kwargs)


def page_handler_class(base):
    """Voila's page handler with the host and site checks and the cap in front of it."""

    class ClassroomPageHandler(base):
        async def get(self, path=None):
            voila = self.settings["voila"]
            problem = host_problem(self.request, voila.allowed_hosts)
            if problem is not None:
                self.log.warning("Refused %s %s: %s", self.request.method, self.request.uri,
                                 problem)
                self.set_status(403)
                self.finish(REFUSED_PAGE.format(reason=html.escape(problem)))
                return
            visitors = voila.visitors
            if visitors.count() >= visitors.cap:
                self.log.warning("Full: %d visitors hold a kernel; refused %s", visitors.cap,
                                 self.request.uri)
                self.set_status(503)
                self.set_header("Retry-After", "60")
                self.finish(FULL_PAGE.format(cap=visitors.cap))
                return
            visit = {}
            _VISIT.set(visit)
            visitors.arriving += 1
            try:
                await super().get(path)
            finally:
                if "kernel" not in visit:
                    visitors.arriving -= 1
                if hasattr(self.kernel_manager, "fill_if_needed"):
                    self.kernel_manager.fill_if_needed(notebook_name=self.notebook_path)

    return ClassroomPageHandler


def _classroom_voila():
    """:class:`ClassroomVoila`, defined on first use (importing Voila takes a second)."""
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    class ClassroomVoila(Voila):
        """Voila with a cap on visitors, host and site checks, and its pool kept under the cap."""

        max_visitors = Integer(MAX_VISITORS, config=True,
                               help="Visitors holding a kernel at most; the next get a full page.")
        allowed_hosts = List(Unicode(), list(LOCAL_HOSTS), config=True,
                             help="Host names the page answers to (without port).")

        def init_settings(self):
            settings = super().init_settings()
            self.visitors = Visitors(self.kernel_manager, self.max_visitors,
                                     self.voila_configuration.default_pool_size)
            self._sign_notebook()
            return settings

        def _sign_notebook(self):
            """Trust the served notebook in this run's in-memory signature store."""
            if self.notebook_path:
                import nbformat

                notebook = nbformat.read(self.notebook_path, as_version=4)
                self.contents_manager.notary.sign(notebook)

        def init_handlers(self):
            handler = page_handler_class(TornadoVoilaHandler)
            return [(pattern, handler if cls is TornadoVoilaHandler else cls, *rest)
                    for pattern, cls, *rest in super().init_handlers()]

    return ClassroomVoila


def voila_argv(argv: list[str]) -> list[str]:
    """Voila's command line: ``argv``, with the app notebook added when it names none."""
    if any(arg.endswith(".ipynb") or Path(arg).is_dir() for arg in argv):
        return list(argv)
    return [*argv, str(NOTEBOOK)]


def main(argv: list[str] | None = None) -> None:
    """Serve the search page with Voila (see the module docstring)."""
    argv = voila_argv(sys.argv[1:] if argv is None else argv)
    missing = [arg for arg in argv if arg.endswith(".ipynb") and not Path(arg).is_file()]
    if missing:
        print(f"error: {missing[0]} does not exist; give the path of a notebook to serve",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    # kernels answer searches from a worker thread: glibc would give each thread its own malloc
    # arena (tens of MB resident per kernel, times a class); two arenas are plenty here
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    # the page template (capstone/apps/jupyter/voila/templates/capstone) is found on this path
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        filter(None, [str(TEMPLATES), os.environ.get("JUPYTER_PATH")]))
    _classroom_voila().launch_instance(argv=argv, config=default_config())


if __name__ == "__main__":
    main()
