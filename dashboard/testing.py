"""Driving a served dashboard from tests and benchmarks.

:func:`start_serve` runs ``swan serve`` in a subprocess on a free loopback port and
waits for its health check; :data:`CHROMIUM` and :data:`CHROMIUM_ARGS` launch
Debian's Chromium headless (through Playwright's ``executable_path``; never
``playwright install``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

#: Debian's Chromium (``apt-get install chromium``).
CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless, offline, sandbox-free run in a container.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until ``url/api/health`` answers 200.

    Raises:
        RuntimeError: the process exited, or no answer within ``timeout`` seconds.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {timeout:.0f} s")
        time.sleep(0.3)


def start_serve(
    store: str | Path, log: Path | None = None, timeout: float = 180.0
) -> tuple[subprocess.Popen, str]:
    """``swan serve --store STORE`` on a free port; ``(process, base url)`` once
    healthy. Output goes to ``log`` (or is discarded). The caller stops it.

    Raises:
        RuntimeError: it did not start (the log's tail is in the message).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "swan_index.cli", "serve", "--store", str(store)]
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], cwd=ROOT, stdout=out, stderr=out
        )
    finally:
        if log is not None:
            out.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout)
    except RuntimeError as exc:
        proc.kill()
        tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
        raise RuntimeError(f"swan serve did not start: {exc}\n{tail}") from None
    return proc, url
