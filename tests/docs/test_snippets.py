"""Every code block of README.md and docs/*.md runs as pasted, or says why not.

What each block is, by its language:

* ``python``: saved as a file and run with the project's Python, against the sidecar
  started here exactly as the docs say (``make run``: 127.0.0.1:50051, the defaults);
* ``sh``: run with ``bash -euo pipefail`` from the repository root, against it too;
* ``toml``: a whole configuration, its file name on the first line (``# sidecar.toml``):
  checked with ``check-config``, every key variable it names set to a placeholder;
  one that binds a Unix socket is started too (on a free TCP port);
* ``ts``: type-checked and run with the project's TypeScript and tsx (clients/ts);
* ``go``: built and run with Debian's Go in GOPATH mode (``.ci/go-run.sh``);
* no language: output or a file tree, not code.

A marker on the line before a block changes that: ``<!-- snippet: excerpt -->`` is
a fragment on purpose; ``<!-- snippet: ci -->`` is a command CI runs itself, so it
must appear in ``.ci/run`` (or be ``make run``, which starts the sidecar here).

One runner for every language, each block in a process of its own: that is what
"as pasted" means (pytest-markdown-docs runs Python blocks inside pytest's process).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ADDRESS = ("127.0.0.1", 50051)
HTTP_ADDRESS = ("127.0.0.1", 50080)
#: Set by .ci/run: a toolchain missing there is a failure, not a skip.
STRICT = os.environ.get("SIDECAR_TESTS_REQUIRE_TOOLCHAINS") == "1"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
_MARKER = re.compile(r"<!-- snippet: (\w+) -->\s*$")


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int
    language: str
    code: str
    marker: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}-{self.language or 'text'}"


def snippets() -> list[Snippet]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = _MARKER.search(before)
            found.append(
                Snippet(
                    page, line, match.group(1), match.group(2), marker.group(1) if marker else ""
                )
            )
    return found


ALL = snippets()
RUN = [s for s in ALL if s.language and s.marker != "excerpt"]


def test_every_block_is_run_or_marked() -> None:
    known = {"python", "sh", "toml", "ts", "go"}
    strays = [s.id for s in ALL if s.language and s.language not in known and not s.marker]
    assert strays == [], f"blocks in no runnable language and not marked excerpt: {strays}"
    assert len(RUN) >= 10


def _listening(address: tuple[str, int] = ADDRESS) -> bool:
    try:
        with socket.create_connection(address, timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The sidecar as the docs start it: ``make run``, defaults, 127.0.0.1:50051."""
    if _listening():
        pytest.fail(
            "port 50051 is taken: the snippets talk to `make run` there; stop what holds it"
        )
    log = tmp_path_factory.mktemp("make-run") / "sidecar.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["make", "run"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        for _ in range(300):
            if b"listening on" in log.read_bytes():
                break
            if proc.poll() is not None:
                pytest.fail(f"make run exited: {log.read_text()[-2000:]}")
            time.sleep(0.05)  # polling for the line above, not a guess
        else:
            pytest.fail("make run did not start within 15 s")
        yield log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # make exits at once on SIGTERM; the sidecar it started drains for a moment
        # more, and the next test may want its ports.
        for _ in range(300):
            if not _listening() and not _listening(HTTP_ADDRESS):
                break
            time.sleep(0.05)  # polling for the ports to free, not a guess


def _run(
    args: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done


def _toolchain(command: str) -> str:
    found = shutil.which(command)
    if found is None:
        message = f"{command} is not installed here"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _python(snippet: Snippet, workdir: Path) -> None:
    path = workdir / "snippet.py"
    path.write_text(snippet.code)
    _run([sys.executable, str(path)], cwd=workdir)


def _sh(snippet: Snippet, workdir: Path) -> None:
    _run(["bash", "-euo", "pipefail", "-c", snippet.code])


def _toml(snippet: Snippet, workdir: Path) -> None:
    first = snippet.code.split("\n", 1)[0]
    assert re.fullmatch(r"# [\w.-]+\.toml", first), f"{snippet.id}: no '# <file>.toml' first line"
    path = workdir / first[2:]
    path.write_text(snippet.code)
    config = tomllib.loads(snippet.code)
    env = {name: "placeholder-key" for name in _key_variables(config)}
    _run([sys.executable, "-m", "llm_sidecar", "check-config", "--config", str(path)], env=env)
    if config.get("server", {}).get("unix_socket"):
        _starts(path, env)


def _key_variables(config: dict[str, object]) -> set[str]:
    names: set[str] = set()
    for route in config.get("models", {}).values():  # type: ignore[union-attr]
        for entry in route.get("providers", []):
            names.update(filter(None, [entry.get("api_key_env", "")]))
            names.update(entry.get("header_env", {}).values())
    for server in config.get("mcp", {}).get("servers", []):  # type: ignore[union-attr]
        names.update(server.get("header_env", {}).values())
    return names


def _starts(path: Path, env: dict[str, str]) -> None:
    """The configuration serves: its listeners bind (TCP on free ports beside the ones
    `make run` holds), and it stops cleanly on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_sidecar", "--config", str(path), "--port", "0"],
        cwd=ROOT,
        env={**os.environ, **env, "LLM_SIDECAR_HTTP__PORT": "0"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        while not any("listening on" in line for line in seen):
            line = proc.stderr.readline()
            assert line, "exited before listening:\n" + "".join(seen)
            seen.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def _ts(snippet: Snippet, workdir: Path) -> None:
    _toolchain("node")
    ts = ROOT / "clients" / "ts"
    name = f"snippet-{snippet.line}.ts"
    path = ts / name
    path.write_text(snippet.code)
    try:
        _run(["npx", "--no-install", "tsc", "--noEmit", "-p", "."], cwd=ts)
        _run(["npx", "--no-install", "tsx", name], cwd=ts)
    finally:
        path.unlink()


def _go(snippet: Snippet, workdir: Path) -> None:
    _toolchain("go")
    path = workdir / "main.go"
    path.write_text(snippet.code)
    _run(["bash", str(ROOT / ".ci" / "go-run.sh"), str(path)], timeout=300)


RUNNERS = {"python": _python, "sh": _sh, "toml": _toml, "ts": _ts, "go": _go}


@pytest.mark.parametrize("snippet", [s for s in RUN if s.marker != "ci"], ids=lambda s: s.id)
def test_snippet_runs_as_pasted(snippet: Snippet, make_run: Path, tmp_path: Path) -> None:
    RUNNERS[snippet.language](snippet, tmp_path)


@pytest.mark.parametrize("snippet", [s for s in RUN if s.marker == "ci"], ids=lambda s: s.id)
def test_ci_runs_the_commands_the_docs_give(snippet: Snippet) -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    for line in snippet.code.splitlines():
        command = line.split("#", 1)[0].strip()
        if command and command != "make run":  # `make run` starts the sidecar above
            assert re.search(rf"^{re.escape(command)}$", ci, re.M), f"{command!r} not in .ci/run"
