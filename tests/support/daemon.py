"""A real ``retenshund`` process for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SECRET = "sk_e2e_secret_key_0001"
PUBLISHABLE = "pk_e2e_publishable_0001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """Starts ``python -m retenshund`` with a config file in ``data_dir``."""

    def __init__(self, data_dir: Path, *, port: int | None = None, extra_toml: str = "",
                 env: dict[str, str] | None = None, taskset: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_toml = extra_toml
        self.env = env or {}
        self.taskset = taskset
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = self.data_dir.parent / f"{self.data_dir.name}.toml"

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f'[server]\nport = {self.port}\n\n[store]\ndata_dir = "{self.data_dir}"\n\n'
            f'[auth]\nsecret_keys = ["{SECRET}"]\npublishable_keys = ["{PUBLISHABLE}"]\n'
            f'signing_secret = "e2e-signing-secret-0123456789"\n\n[limits]\npublishable_rate = 0\npublishable_client_rate = 0\n\n'
            f'[log]\nlevel = "warning"\n\n{self.extra_toml}\n'
        )

    def start(self, timeout: float = 20.0, interval: float = 0.02) -> "Daemon":
        """Start the process and wait for its first 200 on /healthz; ``started_in``
        is then the seconds from spawning it to that answer (the cold start)."""
        self.write_config()
        cmd = [sys.executable, "-m", "retenshund", "--config", str(self.config_path)]
        if self.taskset:
            cmd = ["taskset", "-c", self.taskset, *cmd]
        env = {**os.environ, **self.env}
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._log = open(self.log_path, "ab")
        spawned = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_until(self._healthy, timeout, f"retenshund on port {self.port} to answer /healthz", interval)
        self.started_in = time.perf_counter() - spawned
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the daemon is not running"
        return self.proc.pid

    @property
    def db_path(self) -> Path:
        return self.data_dir / "retenshun.db"

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"retenshund exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
            self._log.close()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        self._log.close()
        return code

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()
