"""Real gateway processes for the tests that need more than the in-process app: several
workers on one database, a crash, what a process writes to stderr.

``GatewayProcess`` runs ``python -m gateway run`` on a free loopback port with a settings
file written for the test (``write_settings``) and the environment it is given, waits for
``/healthz``, and stops it (SIGTERM, then SIGKILL) at the end, showing its log on failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_settings(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """A settings.toml holding only ``sections`` (everything else keeps its default)."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


class GatewayProcess:
    """``python -m gateway run`` in its own process; ``base_url`` once started."""

    def __init__(self, settings_path: Path, log_path: Path, env: Mapping[str, str] | None = None,
                 port: int | None = None) -> None:
        self.settings_path = settings_path
        self.log_path = log_path
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen | None = None
        self._log = None

    async def start(self, timeout: float = 30.0) -> "GatewayProcess":
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--settings", str(self.settings_path), "run",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.process.poll() is None, f"gateway exited: {log_tail(self.log_path)}"
                try:
                    async with http.get(f"{self.base_url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, (
                    f"gateway did not answer /healthz within {timeout}s: {log_tail(self.log_path)}")
                await asyncio.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> "GatewayProcess":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


async def run_cli(settings_path: Path, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """``python -m gateway --settings <file> <args>``: (exit code, stdout, stderr). The settings
    file names the database: the suite's own database variables are not passed on."""
    env = {**os.environ, "GATEWAY_SECRET_KEY": "test-secret"}
    env.pop("GATEWAY_DATABASE_URL", None)
    env.pop("GATEWAY_SETTINGS", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--settings", str(settings_path), *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode, out.decode(), err.decode()
