"""The plugin authoring guide (docs/how-to/write-a-plugin.md) is a working plugin.

Its Python blocks name the file they belong to in their first line (``# src/postback_acme/
destination.py``; ``(continued)`` appends to it). The test writes them out as a package with a
``postback`` entry point on its own path (an installed-looking distribution), checks that it
imports only ``postback`` and ``postback.plugin``, delivers an event through it, and runs the
guide's own tests, the contract kit included, in a separate pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from postback.testing import recording_tracker
from tests._distributions import add_entry_point_dist
from tests.test_plugin_sdk import core_imports_outside_sdk

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "write-a-plugin.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HEAD = re.compile(r"^# (\S+\.py)( \(continued\))?$")


def guide_files() -> dict[str, str]:
    """File path -> source, from the guide's Python blocks in order."""
    files: dict[str, list[str]] = defaultdict(list)
    for body in _FENCE.findall(GUIDE.read_text()):
        head = _HEAD.match(body.splitlines()[0])
        assert head, f"a Python block in the guide does not name its file: {body[:60]!r}"
        path, continued = head.groups()
        assert bool(continued) == (path in files), f"{path}: '(continued)' only after a start"
        files[path].append(body)
    return {path: "\n".join(parts) for path, parts in files.items()}


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for rel, source in guide_files().items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    add_entry_point_dist(monkeypatch, tmp_path / "src", "postback-acme", {"acme": "postback_acme"})
    yield tmp_path
    for name in [m for m in sys.modules if m == "postback_acme" or m.startswith("postback_acme.")]:
        del sys.modules[name]


def test_the_guide_holds_a_whole_plugin() -> None:
    assert set(guide_files()) == {
        "src/postback_acme/__init__.py",
        "src/postback_acme/destination.py",
        "src/postback_acme/emulator.py",
        "tests/test_contract.py",
        "tests/test_acme.py",
        "tests/test_fields.py",
    }


def test_the_guide_plugin_uses_only_the_sdk(acme: Path) -> None:
    for path in sorted((acme / "src").rglob("*.py")):
        assert list(core_imports_outside_sdk(path.read_text())) == [], path


def test_the_guide_plugin_delivers_through_its_emulator(acme: Path) -> None:
    with recording_tracker(vendors=["acme"]) as tracker:
        tracker.track("purchase", user={"email": "a@b.co"}, value=5, currency="EUR")
        tracker.track("sign_up", user={"ip_address": "203.0.113.9"})  # no user id: skipped
        tracker.flush()
        (got,) = tracker.received("acme")
        assert (got["event"], got["amount"], got["user"]) == ("buy", "5", "a@b.co")
        assert tracker.stats()["acme"]["skips"] == {"no user id": 1}


def test_the_guide_tests_pass(acme: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "POSTBACK"))}
    env["PYTHONPATH"] = str(acme / "src")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=acme,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"\b(\d+) passed\b", result.stdout)
    assert passed and int(passed.group(1)) >= 10 and "failed" not in result.stdout, result.stdout
