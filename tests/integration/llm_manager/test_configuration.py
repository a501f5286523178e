"""Configuration that fails loudly, and real hosts' credentials, paths and query strings."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from llm_manager_client import AsyncLLMManagerClient, UserContext
from tests.support.sidecar import ROOT, free_port, make_settings

BAD_CONFIGURATION = 2


def run_sidecar(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``python -m llm_sidecar ARGS`` to its end, in a clean environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "llm_sidecar", *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(path: Path, config: dict[str, Any]) -> str:
    path.write_text(json.dumps(config))
    return str(path)


def one_provider(**entry: Any) -> dict[str, Any]:
    return {
        "default_model": "m",
        "models": {
            "m": {
                "providers": [
                    {"name": "openai", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
                    | entry
                ]
            }
        },
    }


def test_check_config_prints_the_effective_configuration_redacted(tmp_path: Path) -> None:
    config = one_provider(
        api_key_env="TEST_OPENAI_KEY",
        headers={"OpenAI-Organization": "org-secretish-1234"},
        query={"api-version": "2024-10-21", "sig": "q-secret-5678"},
    )
    config["redis"] = {"url": "redis://:redis-pass-9abc@127.0.0.1:6379/0"}
    path = write_config(tmp_path / "c.json", config)
    done = run_sidecar("check-config", "--config", path, env={"TEST_OPENAI_KEY": "sk-live-4321"})
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    entry = printed["models"]["m"]["providers"][0]
    assert entry["api_key_env"] == "TEST_OPENAI_KEY"
    assert entry["headers"] == {"OpenAI-Organization": "<redacted>"}
    assert entry["query"] == {"api-version": "2024-10-21", "sig": "<redacted>"}
    assert printed["redis"]["url"] == "redis://:<redacted>@127.0.0.1:6379/0"
    assert printed["server"]["port"] == 50051  # defaults are part of what runs
    for secret in ("sk-live-4321", "org-secretish-1234", "q-secret-5678", "redis-pass-9abc"):
        assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_a_key_variable_unset_or_empty_refuses_to_start(
    tmp_path: Path, command: str, value: str | None
) -> None:
    path = write_config(tmp_path / "c.json", one_provider(api_key_env="TEST_MISSING_KEY"))
    env = {} if value is None else {"TEST_MISSING_KEY": value}
    done = run_sidecar(command, "--config", path, "--port", str(free_port()), env=env)
    assert done.returncode == BAD_CONFIGURATION
    assert "provider 'openai'" in done.stderr and "$TEST_MISSING_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_provider_must_say_it_needs_no_key(tmp_path: Path) -> None:
    silent = run_sidecar(
        "check-config", "--config", write_config(tmp_path / "a.json", one_provider())
    )
    assert silent.returncode == BAD_CONFIGURATION
    assert "provider 'openai': no credentials configured" in silent.stderr
    assert "no_api_key = true" in silent.stderr
    said = run_sidecar(
        "check-config", "--config", write_config(tmp_path / "b.json", one_provider(no_api_key=True))
    )
    assert said.returncode == 0, said.stderr
    both = run_sidecar(
        "check-config",
        "--config",
        write_config(tmp_path / "c.json", one_provider(no_api_key=True, api_key_env="K")),
        env={"K": "x"},
    )
    assert both.returncode == BAD_CONFIGURATION and "no_api_key = true, yet" in both.stderr


@pytest.mark.parametrize(
    "variable",
    ["LLM_SIDECAR_DEFAULT_MODLE", "LLM_SIDECAR_SERVER__PROT", "LLM_SIDECAR_REDIS__URLL"],
)
def test_an_unknown_setting_variable_is_refused_by_name(variable: str) -> None:
    done = run_sidecar("check-config", env={variable: "x"})
    assert done.returncode == BAD_CONFIGURATION
    assert f"{variable} is not a setting" in done.stderr


def test_known_setting_variables_and_named_secrets_pass(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.json", one_provider(api_key_env="LLM_SIDECAR_OPENAI_KEY"))
    done = run_sidecar(
        "check-config",
        "--config",
        path,
        env={
            "LLM_SIDECAR_SERVER__PORT": "6001",
            "LLM_SIDECAR_TELEMETRY__LOG_LEVEL": "debug",
            "LLM_SIDECAR_OPENAI_KEY": "sk-x",  # a variable the configuration names
            "LLM_SIDECAR_PSEUDONYM_KEY": "p",
        },
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["server"]["port"] == 6001 and printed["telemetry"]["log_level"] == "DEBUG"


def test_a_listener_that_cannot_bind_is_one_clear_line(tmp_path: Path) -> None:
    socket_path = tmp_path / "missing-dir" / "sidecar.sock"
    done = run_sidecar("--port", "-1", "--unix-socket", str(socket_path))
    assert done.returncode == BAD_CONFIGURATION
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"llm-sidecar: cannot listen on unix:{socket_path}: the directory "
        f"{socket_path.parent} does not exist (create it, or set server.unix_socket "
        "(--unix-socket, LLM_SIDECAR_SERVER__UNIX_SOCKET) to a path in one that does)"
    ], done.stderr


@pytest.mark.parametrize(
    ("taken", "setting"),
    [
        ("--port", "server.port (--port, LLM_SIDECAR_SERVER__PORT)"),
        ("--http-port", "http.port (--http-port, LLM_SIDECAR_HTTP__PORT)"),
    ],
)
def test_a_port_in_use_names_the_setting_that_moves_it(taken: str, setting: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {"--port": "0", "--http-port": "0", taken: str(port)}
        done = run_sidecar(*(arg for pair in ports.items() for arg in pair))
    assert done.returncode == BAD_CONFIGURATION
    # The sidecar's own last word (gRPC core may log its bind error before it).
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"llm-sidecar: cannot listen on 127.0.0.1:{port}"), done.stderr
    assert setting in last, last


# -- real hosts: each fake demands exactly the host's path, query and headers ----------------

# What each host demands beyond the path and query its configuration implies. The
# configurations themselves are read from docs/configuration.md, so the docs are tested.
HOSTS: dict[str, dict[str, Any]] = {
    "azure-openai.toml": {
        "env": {"AZURE_OPENAI_API_KEY": "azure-key-1"},
        "headers": {"api-key": "azure-key-1"},
        "absent": ["Authorization"],
    },
    "gemini.toml": {
        "env": {"GEMINI_API_KEY": "gemini-key-2"},
        "headers": {"Authorization": "Bearer gemini-key-2"},
        "absent": [],
    },
    "vllm.toml": {"env": {}, "headers": {}, "absent": ["Authorization"]},
    "ollama.toml": {"env": {}, "headers": {}, "absent": ["Authorization"]},
}


def documented(name: str) -> dict[str, Any]:
    """The TOML block of docs/configuration.md whose first line is ``# <name>``."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    for block in re.findall(r"```toml\n(.*?)```", text, re.S):
        if block.startswith(f"# {name}\n"):
            loaded: dict[str, Any] = tomllib.loads(block)
            return loaded
    raise AssertionError(f"docs/configuration.md has no {name} block")


class StrictHost:
    """Answers a chat completion only to a request with exactly the expected path, query
    and headers; anything else gets the 404 or 401 a real host would give."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> StrictHost:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _any(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, dict(request.query)))
        spec = self.spec
        if request.method != "POST" or request.path != spec["path"]:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        if dict(request.query) != spec["query"]:
            return web.json_response({"error": {"message": "bad query"}}, status=404)
        for name, value in spec["headers"].items():
            if request.headers.get(name) != value:
                return web.json_response({"error": {"message": "no key"}}, status=401)
        if any(name in request.headers for name in spec["absent"]):
            return web.json_response({"error": {"message": "unexpected header"}}, status=400)
        body = await request.json()
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"hello from {body['model']}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
            }
        )


@pytest.mark.parametrize("host", sorted(HOSTS))
async def test_real_hosts_get_their_own_paths_queries_and_headers(
    host: str, sidecar_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    demands = HOSTS[host]
    config = documented(host)
    (route,) = config["models"].values()
    (entry,) = route["providers"]
    documented_url = urlsplit(entry["base_url"])
    expected = {
        "path": documented_url.path + "/chat/completions",
        "query": entry.get("query", {}),
        **demands,
    }
    fake = await StrictHost(expected).start()
    try:
        for name, value in demands["env"].items():
            monkeypatch.setenv(name, value)
        entry = {**entry, "base_url": fake.url + documented_url.path, "probe": "none"}
        settings = make_settings([entry])
        sidecar = await sidecar_factory(settings)
        async with AsyncLLMManagerClient(
            f"127.0.0.1:{sidecar.port}", UserContext("alice"), timeout=10
        ) as client:
            text = await client.ask("hi")
        assert text == f"hello from {entry['model']}"
        assert fake.seen == [(expected["path"], expected["query"])]
    finally:
        await fake.stop()
