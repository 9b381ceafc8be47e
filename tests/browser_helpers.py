"""A local JupyterLab (with Voila's and Notebook 7's server extensions) and Debian's Chromium.

The server binds 127.0.0.1 on a free port with a random token, in its own process group, with
Jupyter's config, runtime and data folders and IPython's folder in a temporary directory (the
venv's ``share/jupyter``, where the ipywidgets and ipympl front-end extensions live, stays on the
path). It serves JupyterLab at ``lab/tree/<path>``, Notebook 7 at ``notebooks/<path>`` and Voila
at ``voila/render/<path>``; both JupyterLab and Notebook 7 expose their application to scripts as
``window.jupyterapp``. :meth:`JupyterServer.stop` shuts the kernels down through the REST API,
stops the process group and returns the processes still alive (none, when all went well).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# JupyterLab settings for a quiet, deterministic test session: no news toast, no autosave,
# every cell in the page (no virtual scrolling).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_chromium(playwright):
    """Debian's headless Chromium through Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing; run `make browser` to install it")
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )


@dataclass
class JupyterServer:
    """A running JupyterLab server; its pages are ``url(path)``."""

    base_url: str
    token: str
    process: subprocess.Popen
    log_path: Path

    def url(self, path: str) -> str:
        """Full address of a page such as ``lab/tree/04_training.ipynb``, token included."""
        separator = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{separator}token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10):
        """Call the REST API (``api/...``); return the decoded JSON, or None when empty."""
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_ids(self) -> list[str]:
        """Ids of the kernels the server runs."""
        return [kernel["id"] for kernel in self.api("GET", "api/kernels")]

    def shutdown_kernels(self, timeout: float = 30) -> None:
        """Shut down every kernel (``DELETE api/kernels/<id>`` returns once it has stopped)."""
        for kernel_id in self.kernel_ids():
            self.api("DELETE", f"api/kernels/{kernel_id}", timeout=timeout)

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> list[psutil.Process]:
        """Shut down every kernel, stop the server's process group, return survivors."""
        processes = [psutil.Process(self.process.pid)]
        try:
            processes += processes[0].children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        try:
            self.shutdown_kernels(timeout)
        except OSError:
            pass  # the server is gone already; the process checks below still apply
        group = os.getpgid(self.process.pid) if self.process.poll() is None else None
        if group is not None:
            os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout)
        _, alive = psutil.wait_procs(processes, timeout=timeout)
        return alive


def isolated_env(home: Path, extra: dict | None = None) -> dict:
    """The environment for a server whose Jupyter and IPython state lives under ``home``."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
        env[name] = str(home / name.lower())
    for relative, settings in LAB_SETTINGS.items():
        path = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    env.update(extra or {})
    return env


def write_kernelspec(home: Path, name: str, env: dict) -> None:
    """Add a kernel ``name`` to servers started with ``home``: this Python, plus ``env``.

    A notebook whose ``metadata.kernelspec.name`` is ``name`` runs in it; its display name is
    the default kernel's, so screenshots look the same.
    """
    folder = home / "jupyter_data_dir" / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "env": env,
    }
    (folder / "kernel.json").write_text(json.dumps(spec))


def start_jupyter(root_dir: Path, home: Path, env: dict | None = None, timeout=90) -> JupyterServer:
    """Start JupyterLab on 127.0.0.1 serving ``root_dir``; wait until ``api/status`` answers.

    Parameters
    ----------
    root_dir : pathlib.Path
        The folder the server shows (notebooks open from here; use a copy, the browser saves).
    home : pathlib.Path
        A temporary folder for Jupyter's and IPython's state and the server log.
    env : dict, optional
        Extra environment variables for the server and its kernels.
    timeout : float
        Seconds to wait for the server to answer.
    """
    port, token = free_port(), secrets.token_hex(16)
    log_path = home / "jupyter.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ] + (["--allow-root"] if os.geteuid() == 0 else [])  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=isolated_env(home, env), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = JupyterServer(f"http://127.0.0.1:{port}/", token, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{server.log()}")
        try:
            server.api("GET", "api/status", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"jupyter lab did not answer within {timeout} s:\n{server.log()}")
