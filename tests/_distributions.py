"""Build real plugin distributions in tests: a dist-info on sys.path, or a wheel to pip-install."""

from __future__ import annotations

import base64
import hashlib
import importlib
import zipfile
from pathlib import Path

import pytest


def add_entry_point_dist(
    monkeypatch: pytest.MonkeyPatch,
    root: Path,
    dist: str,
    entry_points: dict[str, str],
    modules: dict[str, str] | None = None,
) -> None:
    """Make ``root`` an importable location holding an installed-looking distribution
    (on ``sys.path`` until the test ends)."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[postback]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in (modules or {}).items():
        (root / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()


def build_wheel(
    out_dir: Path,
    dist: str,
    version: str,
    package: str,
    files: dict[str, str],
    entry_points: dict[str, str],
) -> Path:
    """Write a minimal, valid py3-none-any wheel (no build backend needed)."""
    norm = dist.replace("-", "_")
    wheel = out_dir / f"{norm}-{version}-py3-none-any.whl"
    info = f"{norm}-{version}.dist-info"
    contents: dict[str, bytes] = {f"{package}/{k}": v.encode() for k, v in files.items()}
    contents[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nRequires-Dist: postback\n"
    ).encode()
    contents[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: postback-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    contents[f"{info}/entry_points.txt"] = (
        "[postback]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    ).encode()
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return wheel
