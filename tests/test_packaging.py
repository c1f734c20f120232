"""Packaging as users meet it: every first-party plugin's metadata, as written and as installed.

A plugin is tied to the core's minor series (postback 0.x may change the plugin API in a minor
release), runs on the core's Pythons, links to its own page in the repository, and declares the
entry point its directory name promises.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import postback
from postback.scaffold import create_plugin

ROOT = Path(__file__).resolve().parents[1]
CORE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PLUGINS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))
URL_KEYS = {"Homepage", "Documentation", "Source", "Issues", "Changelog"}


def _project(directory: Path) -> dict:  # type: ignore[type-arg]
    return tomllib.loads((directory / "pyproject.toml").read_text())["project"]


def _core_requirement(project: dict) -> Requirement:  # type: ignore[type-arg]
    (req,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "postback"]
    return req


def _next_minor(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}"


def test_there_are_plugins() -> None:
    assert len(PLUGINS) >= 5


def test_the_core_has_urls_and_framework_classifiers() -> None:
    assert set(CORE["urls"]) >= URL_KEYS
    assert all(u.startswith("https://") for u in CORE["urls"].values())
    for framework in ("Django", "FastAPI", "Flask", "Pytest"):
        assert f"Framework :: {framework}" in CORE["classifiers"]


@pytest.mark.parametrize("directory", PLUGINS, ids=lambda p: p.name)
def test_plugin_metadata(directory: Path) -> None:
    name = directory.name
    project = _project(directory)
    assert project["name"] == f"postback-{name.replace('_', '-')}"
    # Within the core's minor series: the core's version, never the next minor.
    spec = _core_requirement(project).specifier
    assert spec.contains(postback.__version__), spec
    assert not spec.contains(_next_minor(postback.__version__) + ".0"), (
        f"{project['name']} must depend on postback below {_next_minor(postback.__version__)}"
    )
    assert project["requires-python"] == CORE["requires-python"]
    assert project["license"] == CORE["license"]
    assert (directory / project["readme"]).is_file()
    # The Pythons the core supports, typed, and a page of its own in the core's repository.
    pythons = {c for c in CORE["classifiers"] if c.startswith("Programming Language :: Python")}
    assert pythons <= set(project["classifiers"])
    assert "Typing :: Typed" in project["classifiers"]
    assert (directory / "src" / f"postback_{name}" / "py.typed").is_file()
    urls = project["urls"]
    assert set(urls) >= URL_KEYS
    assert urls["Issues"] == CORE["urls"]["Issues"]
    assert urls["Source"].startswith(CORE["urls"]["Source"]) and urls["Source"].endswith(
        f"/plugins/{name}"
    )
    # The entry point the core finds it by: group "postback", name = the directory's name.
    assert project["entry-points"]["postback"] == {name: f"postback_{name}"}


@pytest.mark.parametrize("directory", PLUGINS, ids=lambda p: p.name)
def test_installed_metadata_matches(directory: Path) -> None:
    """What pip sees (the built metadata), not only the source: catches a stale editable
    install and a build backend that drops a field."""
    project = _project(directory)
    meta = metadata(project["name"])
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    core = [r for r in requires if r.name == "postback" and not r.marker]
    assert [str(r.specifier) for r in core] == [str(_core_requirement(project).specifier)]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert urls == project["urls"]
    assert set(meta.get_all("Classifier") or []) == set(project["classifiers"])


def test_a_scaffolded_plugin_is_pinned_to_the_core_minor(tmp_path: Path) -> None:
    root = create_plugin("acme", tmp_path, core_version="0.1.0")
    req = _core_requirement(_project(root))
    assert req.specifier.contains("0.1.5") and not req.specifier.contains("0.2.0")
