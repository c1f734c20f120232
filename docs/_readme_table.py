"""Write the README's vendor list from the first-party plugins' own metadata.

Each ``plugins/NAME/pyproject.toml`` says how the README presents it::

    [tool.postback-plugin]
    vendor = "AppLovin Axon"                                # the table's "vendor" column
    speaks = "batches of 100, SHA-256 hashed email/phone"   # its "what it speaks" column

and its ``[project] name`` is the "plugin" column. From those, this script rewrites, in
README.md, the vendor table between ``<!-- vendor-table -->`` and ``<!-- /vendor-table -->``,
the ``-e plugins/NAME`` list of the set-up command, and the distributions between
``<!-- plugin-dists -->`` and ``<!-- /plugin-dists -->``; so that a new ``plugins/NAME/`` needs
nothing written outside its directory, only this script run:

    python docs/_readme_table.py           # rewrite README.md
    python docs/_readme_table.py --check   # exit 1 if README.md is not what it would write

tests/test_monorepo.py runs the check.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = re.compile(r"(<!-- vendor-table -->\n).*?(\n<!-- /vendor-table -->)", re.S)
DISTS = re.compile(r"(<!-- plugin-dists -->).*?(<!-- /plugin-dists -->)", re.S)
SETUP = re.compile(r"(pip install -q -e \. )(?:-e plugins/\S+ )+")


def plugin_rows(root: Path = ROOT) -> list[tuple[str, str, str, str]]:
    """(directory name, vendor, distribution, what it speaks) of each plugins/*/, by name."""
    rows = []
    for path in sorted(root.glob("plugins/*/pyproject.toml")):
        data = tomllib.loads(path.read_text())
        meta = data.get("tool", {}).get("postback-plugin", {})
        missing = [k for k in ("vendor", "speaks") if not isinstance(meta.get(k), str)]
        if missing:
            raise SystemExit(
                f"{path.relative_to(root)}: add [tool.postback-plugin] with "
                f"{' and '.join(missing)} (strings): the README's vendor table row"
            )
        rows.append((path.parent.name, meta["vendor"], data["project"]["name"], meta["speaks"]))
    return rows


def render(readme: str, rows: list[tuple[str, str, str, str]]) -> str:
    """``readme`` with its generated parts written from ``rows``."""
    table = "\n".join(
        ["| vendor | plugin | what it speaks |", "|---|---|---|"]
        + [f"| {vendor} | `{dist}` | {speaks} |" for _, vendor, dist, speaks in rows]
    )
    dists = ", ".join(f"`{dist}`" for _, _, dist, _ in rows)
    setup = "".join(f"-e plugins/{name} " for name, _, _, _ in rows)
    for pattern in (TABLE, DISTS):
        if not pattern.search(readme):
            raise SystemExit(f"README.md has lost its {pattern.pattern[:22]}... markers")
    readme = TABLE.sub(lambda m: m.group(1) + table + m.group(2), readme)
    readme = DISTS.sub(lambda m: m.group(1) + dists + m.group(2), readme)
    return SETUP.sub(lambda m: m.group(1) + setup, readme)


def main(argv: list[str]) -> int:
    path = ROOT / "README.md"
    current = path.read_text()
    wanted = render(current, plugin_rows())
    if "--check" in argv:
        if current != wanted:
            print(
                "README.md's vendor list differs from plugins/*/pyproject.toml: run python "
                "docs/_readme_table.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != wanted:
        path.write_text(wanted)
        print("README.md rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
