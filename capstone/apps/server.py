"""The search page: ``notebooks/app.ipynb`` served by Voila on 127.0.0.1 (``make app``).

``python -m capstone.apps.server [VOILA OPTIONS] [NOTEBOOK]`` starts Voila with three settings of its
own (:func:`default_config`); a Voila config file or the command line overrides them:

- it listens on 127.0.0.1 only, and opens no browser;
- each visitor's kernel is shut down after 10 minutes without activity, connected or not
  (Voila already shuts it down when the page is closed normally; culling covers the rest:
  crashed tabs, lost connections, tabs left open);
- the kernel websocket goes through :class:`GuardedKernelConnection`.

Why the guard: voila 0.5's websocket handler reads the header of every binary message it sends
as if it were framed with the ``v1.kernel.websocket.jupyter.org`` protocol. A client that does
not ask for that protocol gets the legacy framing, whose first 8 bytes, read as v1, give an
offset count near 10**18; voila then builds a list of that many offsets on the event loop. The
server grows by tens of MB/s until it is killed, and ignores SIGTERM meanwhile. Any widget
message with a buffer (an image) triggers it.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web
from traitlets.config import Config

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
MAX_PARTS = 1024  # header, parent header, metadata, content and up to 1,020 buffers
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "app.ipynb"
IDLE_TIMEOUT = 600  # seconds without kernel activity before a visitor's kernel is shut down
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
    config.MappingKernelManager.cull_idle_timeout = IDLE_TIMEOUT
    config.MappingKernelManager.cull_interval = 60
    config.MappingKernelManager.cull_connected = True  # a tab left open holds a kernel too
    return config


def voila_argv(argv: list[str]) -> list[str]:
    """Voila's command line: ``argv``, with the app notebook added when it names none."""
    if any(arg.endswith(".ipynb") or Path(arg).is_dir() for arg in argv):
        return list(argv)
    return [*argv, str(NOTEBOOK)]


def main(argv: list[str] | None = None) -> None:
    """Serve the search page with Voila (see the module docstring)."""
    from voila.app import Voila

    argv = voila_argv(sys.argv[1:] if argv is None else argv)
    missing = [arg for arg in argv if arg.endswith(".ipynb") and not Path(arg).is_file()]
    if missing:
        print(f"error: {missing[0]} does not exist; give the path of a notebook to serve",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    Voila.launch_instance(argv=argv, config=default_config())


if __name__ == "__main__":
    main()
