"""Every page runs as written: the shell and Python blocks of README.md and of every docs page,
run in order, in a fresh directory, with the five vendor plugins installed.

How a page's blocks run (one test per page, in a temporary directory):

* ``sh``/``bash``/``shell`` blocks run with ``bash -e``; in ``console`` blocks the lines that
  start with ``$`` are the commands (the other lines are sample output);
* a ``python`` or ``toml`` block whose first line is ``# PATH`` (``# app.py``, ``# postback.toml``)
  is written to PATH, which later blocks use; other ``python`` blocks run as a script;
  other ``toml`` and ``text`` blocks are shown, not run;
* the blocks share one terminal: a shell block's ``export NAME=VALUE`` lines hold for the
  blocks after it;
* ``.venv`` is this test's virtualenv (so ``.venv/bin/postback`` works), and the ports the pages
  use (8090 for the sandbox, 5000 for Flask) become free loopback ports;
* an HTML comment right before a block changes how it runs:
  ``<!-- docs-test: skip REASON -->`` does not run it (the reason is required and shown in
  this test's report), ``<!-- docs-test: background -->`` starts it in the background until
  the page ends (a server; the next block runs once its port answers), and
  ``<!-- docs-test: exit N -->`` expects exit status N; before a ``text`` block,
  ``<!-- docs-test: output -->`` says it is what the block before printed: each of its lines
  must be in that output (``...`` stands for what is left out).

A page that stops working, or a new block that neither runs nor says why not, fails the build.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from postback.plugins import PluginHost

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
RUNNABLE = {"sh", "bash", "shell", "console", "python"}
FIVE = ("applovin", "mobana", "tonai", "whop", "x")
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_DIRECTIVE = re.compile(
    r"<!--[ \t]*docs-test:[ \t]*(skip|background|exit|output)\b[ \t]*([^\n]*?)[ \t]*-->\s*\Z"
)
_PATH_LINE = re.compile(r"^#\s*([\w./-]+\.(py|toml|cfg|txt|jsonl))\s*$")
BLOCK_TIMEOUT = 60.0

pytestmark = pytest.mark.timeout(240)


@attrs.frozen
class Block:
    page: str
    line: int
    lang: str
    body: str
    directive: str = ""  # "skip", "background", "exit" or ""
    argument: str = ""

    @property
    def writes(self) -> str | None:
        """The file this block is, when its first line is ``# PATH``."""
        first = self.body.splitlines()[0] if self.body.strip() else ""
        match = _PATH_LINE.match(first.strip())
        return match.group(1) if match and self.lang in ("python", "toml") else None

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def page_blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text()
    out = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        directive = _DIRECTIVE.search(before[-400:])
        out.append(
            Block(
                page,
                text.count("\n", 0, match.start()) + 1,
                match.group(1),
                match.group(2),
                directive.group(1) if directive else "",
                directive.group(2) if directive else "",
            )
        )
    return out


def commands(block: Block) -> str:
    if block.lang != "console":
        return block.body
    lines = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            lines.append(line[2:])
        elif lines and lines[-1].endswith("\\"):
            lines.append(line)
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, _ = proc.communicate()
            pytest.fail(f"{what}: the background command exited {proc.returncode}:\n{out}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"{what}: nothing listens on port {port} after 30 s")


# --- every block runs or says why not -----------------------------------------------------------


def test_every_runnable_block_runs_or_states_why_not() -> None:
    unmarked = []
    for page in PAGES:
        for block in page_blocks(page):
            if block.lang not in RUNNABLE:
                continue
            if block.directive == "skip" and len(block.argument.split()) < 3:
                unmarked.append(f"{block.where()}: a skip needs a reason (a few words)")
    assert not unmarked, "\n".join(unmarked)


# --- running the pages --------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    yield tmp_path


def page_env(work: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POSTBACK_", "PYTEST_", "APPLOVIN_", "X_", "WHOP_", "TONAI_"))
        and not k.startswith("MOBANA_")
    }
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(work)
    env["HOME"] = str(work)  # ~/src in a page stays in the test's directory
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    return env


def pages_with_blocks_to_run() -> list[str]:
    return [
        page
        for page in PAGES
        if any(
            b.lang in RUNNABLE and b.directive != "skip" and not b.writes for b in page_blocks(page)
        )
    ]


@pytest.mark.parametrize("page", pages_with_blocks_to_run())
def test_page_runs_as_written(page: str, workdir: Path) -> None:
    blocks = [
        b
        for b in page_blocks(page)
        if b.lang in RUNNABLE | {"toml"} or (b.lang == "text" and b.directive == "output")
    ]
    printed = ""
    missing = [v for v in FIVE if v not in PluginHost().emulators]
    if missing:
        pytest.skip(f"the docs assume the five vendor plugins; not installed: {missing}")
    ports = {"8090": str(free_port()), "5000": str(free_port())}
    env = page_env(workdir)
    background: list[subprocess.Popen[str]] = []
    try:
        for block in blocks:
            if block.directive == "skip":
                continue
            body = commands(block)
            for old, new in ports.items():
                body = re.sub(rf"(?<=[:= ]){old}\b", new, body)
            if block.lang == "text":
                for line in block.body.splitlines():
                    shown = re.sub(r"\s+", " ", line.split("...")[0]).strip()
                    assert shown in printed, f"{block.where()}: not in the output: {shown!r}"
                continue
            if block.writes:
                path = workdir / block.writes
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body)
                continue
            if block.lang == "toml":
                continue
            if re.search(r"-m venv|pip install|(^|[\s;&])tox\b", body):
                pytest.fail(
                    f"{block.where()} installs packages, which this test never does: mark it "
                    "<!-- docs-test: skip REASON --> (tests/test_install.py installs the wheels)"
                )
            argv = (
                [sys.executable, "-c", body]
                if block.lang == "python"
                else ["bash", "-e", "-o", "pipefail", "-c", body]
            )
            if block.directive == "background":
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
                background.append(proc)
                for port in ports.values():
                    if port in body:
                        wait_for_port(int(port), proc, block.where())
                continue
            result = subprocess.run(
                argv,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
                check=False,
            )
            printed = re.sub(r"\s+", " ", result.stdout + result.stderr)
            if block.lang != "python":  # one terminal: later blocks see its exports
                env.update(re.findall(r"^export (\w+)=(\S+)", body, re.MULTILINE))
            expected = int(block.argument) if block.directive == "exit" else 0
            assert result.returncode == expected, (
                f"{block.where()} exited {result.returncode} (expected {expected}):\n"
                f"{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
