"""Installation as a user gets it: every distribution of the repository (the core and the five
vendor plugins) built as a wheel and installed, with the framework extras, in a fresh
virtualenv; then ``postback plugins`` and ``postback demo`` run from there.

uv builds and installs (it is in the test extra): a few seconds where pip takes a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("mobana", "x", "whop", "tonai", "applovin")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def uv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "uv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, f"uv {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_wheels_install_in_a_fresh_virtualenv_and_run_the_demo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    for source in (ROOT, *(ROOT / "plugins" / p for p in PLUGINS)):
        uv("build", "--wheel", "-q", "-o", str(wheels), str(source))
    built = sorted(w.name.split("-")[0] for w in wheels.glob("*.whl"))
    assert built == sorted(["postback", *(f"postback_{p}" for p in PLUGINS)])

    venv = tmp_path / "venv"
    uv("venv", "-q", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    [core] = wheels.glob("postback-*.whl")
    plugins = [str(w) for w in wheels.glob("postback_*.whl")]
    # The extras install what their names say.
    uv("pip", "install", "-q", "--python", str(python), f"{core}[flask,asgi,fastapi]", *plugins)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "POSTBACK"))}
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 120}
    imports = "import flask, starlette, fastapi, uvicorn; import postback; print(postback.__file__)"
    found = subprocess.run([str(python), "-c", imports], check=True, **run).stdout
    assert str(venv) in found  # the installed wheel, not this checkout
    listing = subprocess.run([str(venv / "bin" / "postback"), "plugins"], check=True, **run)
    for plugin in PLUGINS:
        assert f"postback-{plugin}" in listing.stdout
    demo = subprocess.run(
        [str(venv / "bin" / "postback"), "demo", "--events", "20"], check=False, **run
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "done: all delivered or settled." in demo.stdout
