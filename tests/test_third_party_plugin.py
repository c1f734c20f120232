"""Issue #18's "done when": a third-party plugin written against ``postback.plugin`` alone,
declaring a user field of its own, installed as its own distribution in a fresh virtualenv,
selected through a config file, receives that field from ``track()`` and passes the contract
kit there.

The package starts from ``postback new-plugin`` (its pyproject, entry point and emulator) and
its destination is then rewritten to declare ``user.loyalty_id``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from postback.scaffold import create_plugin

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: The declaration, replacing the scaffold's context field.
DECLARATION = """    fields = (
        user_field(
            "loyalty_id",
            help="The shop's loyalty card number (L-1042).",
            validator=lambda v: v.upper() if v.upper().startswith("L-") else _bad(v),
        ),
    )
"""

CONTRACT = """\
from postback.testing.contract import DestinationContract


class TestLoyaltyShopContract(DestinationContract):
    vendor = "loyalty_shop"
    sample_events = [
        {"name": "purchase", "value": 49.99, "currency": "USD",
         "user": {"email": "a@b.co", "loyalty_id": "L-7"}, "event_id": "order-1-purchase"},
        {"name": "sign_up", "user": {"user_id": "u-1"}},
    ]
"""

TEST_FIELD = '''\
"""The field this plugin declares, through a tracker selected by a config file."""

import pytest

from postback import InvalidEvent
from postback.testing import recording_tracker

CONFIG = """
[postback]
queue = "memory://"

[vendors.loyalty_shop]
api_key = "sandbox-loyalty-shop-key"
account = "demo"
"""


def test_track_hands_the_declared_field_to_the_plugin(tmp_path) -> None:
    path = tmp_path / "postback.toml"
    path.write_text(CONFIG)
    tracker = recording_tracker(path)
    try:
        tracker.track("sign_up", user={"user_id": "u-1", "loyalty_id": " l-1042 "})
        [got] = tracker.received("loyalty_shop")
        assert got["loyalty_id"] == "L-1042"
        with pytest.raises(InvalidEvent, match="did you mean 'loyalty_id'"):
            tracker.track("sign_up", user={"user_id": "u-1", "loyalty_idd": "L-1"})
        with pytest.raises(InvalidEvent, match="user.loyalty_id: must look like 'L-1042'"):
            tracker.track("sign_up", user={"user_id": "u-1", "loyalty_id": "1042"})
    finally:
        tracker.close()
'''


def _rewrite_destination(root: Path) -> None:
    path = root / "src" / "postback_loyalty_shop" / "destination.py"
    text = path.read_text()
    start = text.index("    fields = (\n")
    end = text.index("    )\n", start) + len("    )\n")
    text = text[:start] + DECLARATION + text[end:]
    text = text.replace("    context_field,\n", "").replace(
        "    setting,\n", "    setting,\n    user_field,\n"
    )
    text = text.replace(
        '        if click_id := event.context.get("loyalty_shop_click_id"):\n'
        '            record["click_id"] = click_id\n',
        '        if loyalty := event.user.get("loyalty_id"):\n'
        '            record["loyalty_id"] = loyalty\n',
    )
    text += textwrap.dedent("""

        def _bad(value: str) -> str:
            raise ValueError(f"must look like 'L-1042', got {value!r}")
    """)
    path.write_text(text)
    # Its own tests: the contract kit with a sample carrying the field, and the field itself
    # (the scaffold's vendor tests are about the scaffold's click id, gone here).
    (root / "tests" / "test_loyalty_shop.py").unlink()
    (root / "tests" / "test_contract.py").write_text(CONTRACT)
    (root / "tests" / "test_field.py").write_text(TEST_FIELD)


def test_a_third_party_plugin_with_its_own_user_field(tmp_path: Path) -> None:
    root = create_plugin("loyalty_shop", tmp_path)
    _rewrite_destination(root)
    source = (root / "src" / "postback_loyalty_shop" / "destination.py").read_text()
    imports = [
        line
        for line in source.splitlines()
        if line.startswith(("import postback", "from postback"))
    ]
    assert imports == ["from postback.plugin import ("], imports  # the SDK alone
    venv = tmp_path / "venv"
    run = {"check": True, "capture_output": True, "text": True, "timeout": 600}
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable, str(venv)], **run
    )
    python = venv / "bin" / "python"
    # The core from this checkout; the plugin built and installed as its own distribution.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "-e",
            str(ROOT),
            f"{root}[test]",
        ],
        **run,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "POSTBACK"))}
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
    where = subprocess.run(
        [str(python), "-c", "import postback_loyalty_shop; print(postback_loyalty_shop.__file__)"],
        env=env,
        **run,
    ).stdout
    assert str(venv) in where  # the installed distribution, not the source tree
