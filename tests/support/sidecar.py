"""Start real sidecars (in-process or as a child process) for tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_sidecar import Sidecar
from llm_sidecar.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def provider(
    name: str, url: str, *, kind: str = "openai", timeout: float = 5.0, **extra: Any
) -> dict[str, Any]:
    keyed = "api_key_env" in extra or "header_env" in extra
    return {
        "name": name,
        "kind": kind,
        "base_url": url,
        "model": f"{name}-model",
        "timeout_seconds": timeout,
        # The fake upstreams take no key; a real provider's entry names its variable.
        **({} if keyed else {"no_api_key": True}),
        **extra,
    }


#: Redis timeouts of test sidecars. The product's defaults (0.5 s) count a slow reply
#: as an outage; on a machine running the suite beside other work a reply can take that
#: long, and tests of outages kill Redis (refused at once) rather than slow it.
PATIENT_REDIS = {"socket_timeout_seconds": 3.0, "connect_timeout_seconds": 3.0}


def _patient(redis: Any) -> Any:
    return {**PATIENT_REDIS, **redis} if isinstance(redis, dict) and redis.get("url") else redis


def make_settings(
    providers: Sequence[dict[str, Any]] | None = None,
    *,
    models: dict[str, Any] | None = None,
    **sections: Any,
) -> Settings:
    """Settings for a test sidecar on a free loopback port, probes off unless asked."""
    values: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "grace_period_seconds": 1.0},
        "http": {"port": 0},
        "failover": {"health_interval_seconds": 0, "retry_rounds": 0},
        "resources": {"sample_interval_seconds": 0},
        "telemetry": {"log_format": "text"},
    }
    if models is not None:
        values["models"] = models
        values["default_model"] = next(iter(models))
    elif providers is not None:
        values["models"] = {"m": {"providers": list(providers)}}
        values["default_model"] = "m"
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    if "redis" in values:
        values["redis"] = _patient(values["redis"])
    return Settings(**values)


def write_process_config(path: Path, providers: Sequence[dict[str, Any]], **sections: Any) -> Path:
    """A JSON config file for a sidecar run as a child process: route "m" over
    ``providers``, probes and sampling off, quiet logs; ``sections`` merged over that."""
    config: dict[str, Any] = {
        "default_model": "m",
        "http": {"port": 0},
        "models": {"m": {"providers": list(providers)}},
        "failover": {"health_interval_seconds": 0},
        "resources": {"sample_interval_seconds": 0},
        "telemetry": {"log_level": "WARNING"},
    }
    for key, value in sections.items():
        base = config.get(key)
        config[key] = {**base, **value} if isinstance(base, dict) else value
    if "redis" in config:
        config["redis"] = _patient(config["redis"])
    path.write_text(json.dumps(config))
    return path


async def start_sidecar(settings: Settings, **kwargs: Any) -> Sidecar:
    sidecar = Sidecar(settings, **kwargs)
    await sidecar.start()
    return sidecar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def debug_process(directory: Path, providers: Sequence[dict[str, Any]]) -> SidecarProcess:
    """A child sidecar logging its own records at DEBUG, as JSON lines."""
    config = write_process_config(
        directory / "sidecar.json",
        providers,
        telemetry={"log_level": "debug", "log_format": "json"},
    )
    return SidecarProcess(config)


class SidecarProcess:
    """The sidecar as a real child process (``python -m llm_sidecar``).

    By default it binds a port of its own choosing (port 0) and the port is read
    from its "listening on" line once it is ready: a port picked here and handed
    over could be taken by another process in between (tests run in parallel).
    """

    def __init__(
        self,
        config_path: Path,
        port: int = 0,
        env: dict[str, str] | None = None,
        *,
        output: Path | None = None,
    ) -> None:
        """``output``: the file for stdout and stderr (default: a temporary one). Never a
        pipe: one nobody reads while the child runs fills up under verbose logging, and the
        child then blocks on its next log line."""
        self.port = port
        if output is None:
            handle, name = tempfile.mkstemp(prefix="sidecar-", suffix=".log")
            os.close(handle)
            output = Path(name)
            self._temporary: Path | None = output
        else:
            self._temporary = None
        self._output = output
        full_env = {**os.environ, **(env or {})}
        with output.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llm_sidecar",
                    "--config",
                    str(config_path),
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=full_env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> bytes:
        """Everything the process wrote so far."""
        return self._output.read_bytes()

    @property
    def http_url(self) -> str:
        """The HTTP listener's base URL, from the "listening on" line (once ready)."""
        found = _HTTP_LISTENING.search(self.output())
        if found is None:
            raise RuntimeError("no HTTP listener on TCP")
        return found.group(1).decode()

    def _bound_port(self) -> int | None:
        found = _LISTENING.search(self.output())
        return int(found.group(1)) if found else None

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the child listens (and, with port 0, its port is known)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited: {self.output().decode()[-2000:]}")
            bound = self._bound_port()
            if bound is not None:
                self.port = bound
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("sidecar did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __del__(self) -> None:
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)


#: The line the sidecar prints once every listener is bound.
_LISTENING = re.compile(rb"llm-sidecar listening on (?:[^\n]*? )?127\.0\.0\.1:(\d+)")
_HTTP_LISTENING = re.compile(rb"llm-sidecar listening on [^\n]*?(http://127\.0\.0\.1:\d+)")
