"""Every first-party plugin under plugins/ is built, typed, tested and listed like the others.

mypy and ruff find plugins/*/ by glob. tox needs each plugin's name
(env_list, its own env, [testenv] deps; tox 4 cannot glob its env list): a new plugins/<name>/
that is missing there fails here, naming what to add. The README's vendor table, set-up line and
list of distributions are written by docs/_readme_table.py from each plugin's pyproject.toml
(``[tool.postback-plugin]``): a README that differs from what it would write fails here.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType

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


def _env_sections(ini: configparser.ConfigParser) -> dict[str, str]:
    """Env name -> its section, with generative sections (``testenv:{a,b}``) expanded."""
    out: dict[str, str] = {}
    for section in ini.sections():
        if not section.startswith("testenv:"):
            continue
        env = section.removeprefix("testenv:")
        names = env[1:-1].split(",") if env.startswith("{") and env.endswith("}") else [env]
        out.update({n.strip(): section for n in names})
    return out


@pytest.mark.parametrize("name", PLUGINS)
def test_tox_tests_the_plugin_alone_and_with_the_others(name: str) -> None:
    ini = _tox()
    env_list = [e.strip() for e in ini["tox"]["env_list"].split(",")]
    assert name in env_list, f"add {name} to env_list in tox.ini"
    sections = _env_sections(ini)
    assert name in sections, f"add {name} to the plugin envs' [testenv:{{...}}] in tox.ini"
    env = ini[sections[name]]
    deps = [d.replace("{env_name}", name) for d in _lines(env["deps"])]
    commands = [c.replace("{env_name}", name) for c in _lines(env["commands"])]
    assert f"-e plugins/{name}" in deps
    assert f"pytest plugins/{name}/tests {{posargs}}" in commands
    # Installed for the core tests.
    assert f"-e plugins/{name}" in _lines(ini["testenv"]["deps"]), "add it to [testenv] deps"


def test_type_check_and_lint_find_plugins_by_themselves() -> None:
    ini = _tox()
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert _lines(ini["testenv:type"]["commands"]) == ["mypy"]
    assert "plugins/*/src" in tool["mypy"]["files"] and tool["mypy"]["strict"] is True
    assert "plugins/*/src" in tool["ruff"]["src"]  # first-party for isort, by glob


@pytest.mark.parametrize("name", PLUGINS)
def test_readme_lists_the_plugin(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    dist = tomllib.loads((ROOT / "plugins" / name / "pyproject.toml").read_text())["project"]
    assert re.search(rf"^\| [^|]+ \| `{re.escape(dist['name'])}` \|", readme, re.M), (
        f"add a row for {dist['name']} to the README's vendor table"
    )
    assert f"-e plugins/{name} " in readme, "add -e plugins/NAME to the README's set-up line"


def test_tox_has_no_env_for_a_missing_plugin() -> None:
    ours = {"lint", "type", "plugins", "docs", "demo", "bench"}
    for env, section in _env_sections(_tox()).items():
        if env not in ours and not env.startswith("py3"):
            assert env in PLUGINS, f"[{section}]: {env} names no directory under plugins/"


def _readme_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_readme_table", ROOT / "docs/_readme_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_vendor_list_is_what_the_plugins_metadata_says() -> None:
    gen = _readme_table()
    readme = (ROOT / "README.md").read_text()
    assert gen.render(readme, gen.plugin_rows()) == readme, (
        "README.md's vendor list differs from plugins/*/pyproject.toml [tool.postback-plugin]: "
        "run python docs/_readme_table.py"
    )
    assert gen.main(["--check"]) == 0


def test_a_sixth_plugin_needs_only_its_own_directory_for_the_readme(tmp_path: Path) -> None:
    gen = _readme_table()
    for name in PLUGINS:
        (tmp_path / "plugins" / name).mkdir(parents=True)
        shutil.copy(ROOT / "plugins" / name / "pyproject.toml", tmp_path / "plugins" / name)
    new = tmp_path / "plugins" / "acme"
    new.mkdir()
    (new / "pyproject.toml").write_text(
        '[project]\nname = "postback-acme"\n\n'
        '[tool.postback-plugin]\nvendor = "Acme Ads"\nspeaks = "JSON over HTTPS"\n'
    )
    readme = gen.render((ROOT / "README.md").read_text(), gen.plugin_rows(tmp_path))
    assert "| Acme Ads | `postback-acme` | JSON over HTTPS |" in readme
    assert "-e plugins/acme -e plugins/applovin " in readme
    assert "`postback-acme`, `postback-applovin`" in readme
    (new / "pyproject.toml").write_text('[project]\nname = "postback-acme"\n')
    with pytest.raises(SystemExit, match=r"add \[tool.postback-plugin\] with vendor and speaks"):
        gen.plugin_rows(tmp_path)
