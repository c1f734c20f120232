"""`postback.plugin` is the one import surface for vendor plugins.

The first-party plugins and the scaffold's package import only `postback` and `postback.plugin`
from the core; the shared response helpers behave as documented.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

import postback
import postback.plugin as sdk
from postback.plugin import (
    DEFAULT_STATUS_OUTCOMES,
    Delivered,
    Destination,
    Halt,
    Rejected,
    RejectedBatch,
    Retry,
    Secret,
    StatusOutcomes,
    body_snippet,
    json_or_none,
    setting,
)
from postback.scaffold import create_plugin

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"postback", "postback.plugin"}


def core_imports_outside_sdk(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every import of a `postback` module other than the allowed two."""
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "postback":  # `from postback import delivery` reaches inside too
                modules = [f"postback.{a.name}" for a in node.names if _is_submodule(a.name)]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        for module in modules:
            if module.split(".")[0] == "postback" and module not in ALLOWED:
                yield node.lineno, module


def _is_submodule(name: str) -> bool:
    return name not in postback.__all__


def _offences(paths: list[Path]) -> list[str]:
    return [
        f"{path}:{line}: imports {module}"
        for path in paths
        for line, module in core_imports_outside_sdk(path.read_text())
    ]


def test_the_check_catches_engine_imports() -> None:
    bad = (
        "from postback.delivery.retry import retry_after_seconds\n"
        "import postback.events\n"
        "from postback import delivery\n"
        "def f():\n    from postback.pii import hash_email\n"
    )
    good = (
        "from postback import Tracker\nfrom postback.plugin import Destination\nimport postback\n"
    )
    assert [m for _, m in core_imports_outside_sdk(bad)] == [
        "postback.delivery.retry",
        "postback.events",
        "postback.delivery",
        "postback.pii",
    ]
    assert list(core_imports_outside_sdk(good)) == []


def test_first_party_plugins_import_only_the_sdk() -> None:
    sources = sorted(ROOT.glob("plugins/*/src/**/*.py"))
    assert len({p.parts[len(ROOT.parts) + 1] for p in sources}) >= 5, "no plugin sources found"
    assert _offences(sources) == [], (
        "a plugin reaches into postback's internals; import it from postback.plugin instead "
        "(add it there if a vendor really needs it)"
    )


def test_the_reference_vendor_imports_only_the_sdk() -> None:
    """postback.testing.example is the vendor plugin authors are told to copy."""
    assert _offences([ROOT / "src" / "postback" / "testing" / "example.py"]) == []


def test_the_scaffold_imports_only_the_sdk(tmp_path: Path) -> None:
    root = create_plugin("acme", tmp_path)
    sources = sorted((root / "src").rglob("*.py"))
    assert len(sources) == 3
    assert _offences(sources) == []


def test_the_sdk_exports_what_it_lists() -> None:
    assert sorted(sdk.__all__) == sorted(set(sdk.__all__))
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    public = {n for n in vars(sdk) if n[0] not in "_@" and n != "annotations"}
    assert public == set(sdk.__all__), "every public name of postback.plugin is in __all__"
    # What `postback` itself offers plugins is the same object through either door.
    for name in ("Destination", "Emulator", "hookimpl", "Secret", "setting", "Delivered"):
        assert getattr(postback, name) is getattr(sdk, name)


# ------------------------------------------------------------------------------------------
# Shared response helpers


@attrs.frozen
class _Settings:
    api_key: Secret = setting(help="key", secret=True)
    retry_unconfirmed: bool = setting(help="retry", default=True)


class _Vendor(Destination):
    name = "acme"
    settings_class = _Settings


def _vendor(retry_unconfirmed: bool = True) -> _Vendor:
    return _Vendor(_Settings(Secret("sk-live-123456"), retry_unconfirmed))


def test_json_or_none() -> None:
    assert json_or_none(httpx.Response(200, json={"ok": True})) == {"ok": True}
    assert json_or_none(httpx.Response(200, text="<html>")) is None
    assert json_or_none(httpx.Response(204)) is None
    assert json_or_none(httpx.Response(200, content=b"\xff\xfe")) is None


def test_body_snippet_is_short_one_line_and_redacted() -> None:
    dest = _vendor()
    rsp = httpx.Response(400, text="bad key sk-live-123456\n\n  try   again " + "x" * 500)
    got = body_snippet(rsp, dest.redact, limit=40)
    assert "sk-live" not in got and got.startswith("bad key *** try again x")
    assert got.endswith("...") and len(got) == 43
    assert body_snippet(httpx.Response(502), dest.redact, empty="(empty body)") == "(empty body)"
    assert body_snippet(httpx.Response(500, content=b"\xff oops"), dest.redact) == "\ufffd oops"


def test_a_secret_cut_at_the_limit_does_not_show() -> None:
    dest = _vendor()
    rsp = httpx.Response(400, text="k=sk-live-123456")
    for limit in range(1, 20):
        assert "sk-live" not in body_snippet(rsp, dest.redact, limit=limit)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (301, "reject"),
        (400, "reject"),
        (401, "halt"),
        (403, "halt"),
        (404, "reject"),
        (408, "retry"),
        (429, "retry"),
        (500, "unconfirmed"),
        (502, "unconfirmed"),
        (503, "retry"),
        (504, "unconfirmed"),
        (520, "retry"),
    ],
)
def test_default_status_kinds(status: int, kind: str) -> None:
    assert DEFAULT_STATUS_OUTCOMES.kind(status) == kind


def test_a_vendor_extends_the_default_without_changing_it() -> None:
    mine = DEFAULT_STATUS_OUTCOMES.extend({400: "reject_batch", 404: "halt", 500: "retry"})
    assert (mine.kind(400), mine.kind(404), mine.kind(500), mine.kind(401)) == (
        "reject_batch",
        "halt",
        "retry",
        "halt",
    )
    assert DEFAULT_STATUS_OUTCOMES.kind(400) == "reject"
    assert mine.extend({400: "reject"}).kind(400) == "reject"


def test_outcomes_from_statuses() -> None:
    mine = StatusOutcomes({400: "reject_batch"})
    dest = _vendor()
    hint = {"retry-after": "7"}
    assert mine.outcome(dest, httpx.Response(200), "r") == Delivered()
    assert mine.outcome(dest, httpx.Response(429, headers=hint), "r") == Retry("r", 7.0)
    assert mine.outcome(dest, httpx.Response(401), "r") == Halt("r", 401)
    assert mine.outcome(dest, httpx.Response(400), "r") == RejectedBatch("r", 400)
    assert mine.outcome(dest, httpx.Response(422), "r", detail="d") == Rejected("r", 422, "d")
    assert mine.outcome(dest, httpx.Response(502), "r") == Retry("r")
    # A 5xx while processing may have been recorded: retry_unconfirmed = false dead-letters it.
    at_most_once = mine.outcome(_vendor(retry_unconfirmed=False), httpx.Response(502), "r")
    assert isinstance(at_most_once, Rejected) and at_most_once.status == 502


def test_parsed_url_is_the_url_parsed_once() -> None:
    class Acme(_Vendor):
        default_origin = "https://api.acme.test"

    dest = Acme(_Settings(Secret("k")), base_url="http://127.0.0.1:9/")
    url = dest.parsed_url("/v1/events")
    assert isinstance(url, httpx.URL) and str(url) == dest.url("/v1/events")
    assert str(url) == "http://127.0.0.1:9/v1/events"  # base_url replaces the origin
    assert dest.parsed_url("/v1/events") is url  # kept, not parsed again
    with_key = dest.parsed_url("/v1/event", {"pixel_id": "p 1"})
    assert str(with_key) == "http://127.0.0.1:9/v1/event?pixel_id=p+1"
    assert dest.parsed_url("/v1/event", {"pixel_id": "p2"}).params["pixel_id"] == "p2"
    other = Acme(_Settings(Secret("k")))  # each destination keeps its own
    assert other.parsed_url("/v1/events").host == "api.acme.test"
    # A request built from it is the request built from the text.
    request = httpx.Request("POST", dest.parsed_url("/v1/event", {"pixel_id": "p"}), content=b"{}")
    assert request.url == httpx.Request("POST", "http://127.0.0.1:9/v1/event?pixel_id=p").url


def test_parsed_url_keeps_a_bounded_number_of_urls() -> None:
    dest = _vendor()
    urls = [dest.parsed_url("/v1/events", {"n": str(i)}) for i in range(200)]
    assert [u.params["n"] for u in urls] == [str(i) for i in range(200)]
    assert len(dest.__dict__["_parsed_urls"]) == 64
