"""Every first-party plugin under plugins/ is built, typed, tested and listed like the others.

A new plugins/<name>/ that is missing from tox.ini (so CI would never test it), from the type
check, or from the README fails here, naming what to add.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml"))


def _tox() -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return ini


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.strip().splitlines() if line.strip()]


def test_every_plugin_directory_is_a_package() -> None:
    assert len(PLUGINS) >= 5
    for name in PLUGINS:
        assert (ROOT / "plugins" / name / "src" / f"postback_{name}" / "__init__.py").is_file()
        assert (ROOT / "plugins" / name / "tests").is_dir(), f"plugins/{name} has no tests/"


@pytest.mark.parametrize("name", PLUGINS)
def test_tox_tests_the_plugin_alone_and_with_the_others(name: str) -> None:
    ini = _tox()
    env_list = [e.strip() for e in ini["tox"]["env_list"].split(",")]
    assert name in env_list, f"add {name} to env_list in tox.ini"
    section = f"testenv:{name}"
    assert section in ini, f"add a [{section}] to tox.ini (copy another plugin's)"
    env = ini[section]
    assert f"-e plugins/{name}" in _lines(env["deps"]), f"[{section}] deps: -e plugins/{name}"
    assert f"pytest plugins/{name}/tests {{posargs}}" in _lines(env["commands"])
    # Installed for the core tests, typed strictly, and in the all-plugins run.
    assert f"-e plugins/{name}" in _lines(ini["testenv"]["deps"]), "[testenv] deps"
    mypy = [c for c in _lines(ini["testenv:type"]["commands"]) if "--strict" in c]
    assert any(f"plugins/{name}/src" in c.split() for c in mypy), "[testenv:type] mypy --strict"
    together = _lines(ini["testenv:plugins"]["commands"])[0].split()
    assert f"plugins/{name}/tests" in together, "[testenv:plugins] commands"


@pytest.mark.parametrize("name", PLUGINS)
def test_lint_and_readme_know_the_plugin(name: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    first_party = pyproject["tool"]["ruff"]["lint"]["isort"]["known-first-party"]
    assert f"postback_{name}" in first_party, "[tool.ruff.lint.isort] known-first-party"
    readme = (ROOT / "README.md").read_text()
    dist = tomllib.loads((ROOT / "plugins" / name / "pyproject.toml").read_text())["project"]
    assert re.search(rf"^\| [^|]+ \| `{re.escape(dist['name'])}` \|", readme, re.M), (
        f"add a row for {dist['name']} to the README's vendor table"
    )
    assert f"-e plugins/{name} " in readme, "add -e plugins/NAME to the README's set-up line"


def test_tox_has_no_env_for_a_missing_plugin() -> None:
    ini = _tox()
    ours = {"lint", "type", "plugins", "docs", "demo", "bench"}
    for section in ini.sections():
        env = section.removeprefix("testenv:")
        if section.startswith("testenv:") and env not in ours and not env.startswith("py3"):
            assert env in PLUGINS, f"[{section}] names no directory under plugins/"
