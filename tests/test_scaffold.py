"""`postback new-plugin`: the generated package installs in a fresh virtualenv and passes its
own tests there."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from postback.cli import main
from postback.scaffold import create_plugin

ROOT = Path(__file__).resolve().parents[1]


def test_cli_scaffolds_and_refuses_bad_names(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["new-plugin", "acme", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "postback-acme"
    assert (root / "pyproject.toml").read_text().count('acme = "postback_acme"') == 1
    assert (root / "src/postback_acme/destination.py").exists()
    again = runner.invoke(main, ["new-plugin", "acme", "-d", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(main, ["new-plugin", "Bad-Name", "-d", str(tmp_path)])
    assert bad.exit_code == 2 and "not a usable vendor name" in bad.output


def _readme_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_readme_table", ROOT / "docs/_readme_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaffolded_plugin_has_the_readme_table_metadata_of_the_first_party_ones(
    tmp_path: Path,
) -> None:
    root = create_plugin("acme_ads", tmp_path / "plugins")
    meta = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["postback-plugin"]
    for first_party in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        theirs = tomllib.loads(first_party.read_text())["tool"]["postback-plugin"]
        assert set(meta) == set(theirs), first_party
    # The README-table code reads it as it reads plugins/*/ in this repository.
    gen = _readme_table()
    rows = gen.plugin_rows(tmp_path)
    assert rows == [
        ("postback-acme-ads", "Acme Ads", "postback-acme-ads", "JSON batches of 50, bearer key")
    ]
    readme = "<!-- vendor-table -->\n\n<!-- /vendor-table -->\n<!-- plugin-dists --><!-- /plugin-dists -->"
    written = gen.render(readme, rows)
    assert "| Acme Ads | `postback-acme-ads` | JSON batches of 50, bearer key |" in written
    assert "<!-- plugin-dists -->`postback-acme-ads`<!-- /plugin-dists -->" in written
    # What the scaffold says of its vendor is true of the generated destination.
    assert "max_batch_size = 50" in (root / "src/postback_acme_ads/destination.py").read_text()


@pytest.mark.slow
def test_generated_plugin_passes_its_tests_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    root = create_plugin("acme_ads", tmp_path)
    venv = tmp_path / "venv"
    run = {"check": True, "capture_output": True, "text": True, "timeout": 600}
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable, str(venv)], **run
    )
    python = venv / "bin" / "python"
    # The core from this checkout, then the generated plugin with its test extra.
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
            "-e",
            f"{root}[test]",
        ],
        **run,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "POSTBACK"))}
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "28 passed" in result.stdout
    listing = subprocess.run([str(venv / "bin" / "postback"), "plugins"], env=env, **run).stdout
    assert "acme_ads" in listing and "postback-acme-ads" in listing


def test_a_name_ending_with_an_underscore_is_refused(tmp_path: Path) -> None:
    """``acme_`` would make the distribution ``postback-acme-``, a name no build backend takes
    (PEP 508: it must end with a letter or digit): the package would not install."""
    with pytest.raises(ValueError, match="ending with a letter or digit"):
        create_plugin("acme_", tmp_path)
    assert not (tmp_path / "postback-acme-").exists()
    assert create_plugin("a1", tmp_path).name == "postback-a1"


def test_a_vendor_named_contract_keeps_the_contract_tests(tmp_path: Path) -> None:
    """The vendor's tests go to tests/test_NAME.py: for ``contract`` that was the contract
    kit's file, which they overwrote, leaving the plugin untested against the contract."""
    root = create_plugin("contract", tmp_path)
    tests = {p.name: p.read_text() for p in (root / "tests").glob("test_*.py")}
    assert len(tests) == 2, sorted(tests)
    assert "DestinationContract" in tests["test_contract.py"]


def test_cli_in_a_directory_it_cannot_write_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["new-plugin", "acme", "-d", str(blocker / "sub")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cannot create" in result.output and "Not a directory" in result.output
