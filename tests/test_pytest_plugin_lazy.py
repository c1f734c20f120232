"""The pytest plugin costs nothing until a postback fixture runs.

pytest imports the ``pytest11`` entry point in every test run of every app that has postback
installed; importing the rest of postback there cost 0.2-0.9 s per run. The check is on what
gets imported, not on time (no timing assertions in unit tests).
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import postback
import postback.testing

PROBE = """
import sys
import pytest
before = set(sys.modules)
import {module}
print(sorted(m for m in set(sys.modules) - before))
"""


def _imported_by(module: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return eval(out)  # a list literal printed by the probe


def test_the_entry_point_is_the_lazy_module() -> None:
    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "postback"]
    assert ep.value == "postback.testing.pytest_plugin"


def test_loading_the_pytest_plugin_imports_no_postback_internals() -> None:
    loaded = _imported_by("postback.testing.pytest_plugin")
    assert sorted(loaded) == ["postback", "postback.testing", "postback.testing.pytest_plugin"]


def test_import_postback_is_cheap_and_names_resolve_on_use() -> None:
    assert _imported_by("postback") == ["postback"]
    assert set(postback._EXPORTS) | {"__version__"} == set(postback.__all__)
    for name in postback.__all__:
        assert getattr(postback, name) is not None
    assert set(postback.testing._EXPORTS) == set(postback.testing.__all__)
    for name in postback.testing.__all__:
        assert getattr(postback.testing, name) is not None
    assert "Tracker" in dir(postback)


def test_an_unknown_name_is_an_attribute_error() -> None:
    for module in (postback, postback.testing):
        try:
            module.NoSuchThing  # type: ignore[attr-defined]
        except AttributeError as exc:
            assert "NoSuchThing" in str(exc)
        else:
            raise AssertionError("no AttributeError")
