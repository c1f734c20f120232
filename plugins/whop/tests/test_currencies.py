"""Whop's currency lists: exactly the docs page's list plus what the current contract adds;
the codes beyond ISO 4217 reach Whop through the canonical model; the README lists the code's."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from postback import Tracker
from postback.iso import CURRENCIES
from postback.sandbox import Sandbox
from postback_whop import WhopDestination
from postback_whop.vocab import CONVERSIONS_CURRENCIES, EVENTS_CURRENCIES

MakeTracker = Callable[..., Tracker]

#: The docs page's list (vendor-docs/whop-create-conversion.txt), in its order.
DOCS_PAGE = (
    "usd, sgd, inr, aud, brl, cad, dkk, eur, nok, gbp, sek, chf, hkd, huf, jpy, mxn, myr, pln, "
    "czk, nzd, aed, eth, ape, cop, ron, thb, bgn, idr, dop, php, try, krw, twd, vnd, pkr, clp, "
    "uyu, ars, zar, dzd, tnd, mad, kes, kwd, jod, all, xcd, amd, bsd, bhd, bob, bam, khr, crc, "
    "xof, egp, etb, gmd, ghs, gtq, gyd, ils, jmd, mop, mga, mur, mdl, mnt, nad, ngn, mkd, omr, "
    "pyg, pen, qar, rwf, sar, rsd, lkr, tzs, ttd, uzs, rub, btc, cny, usdt"
).split(", ")


def test_the_lists_are_the_docs_plus_the_current_contract() -> None:
    assert set(DOCS_PAGE) | {"kzt"} == CONVERSIONS_CURRENCIES
    assert CONVERSIONS_CURRENCIES | {"awg", "whop_usd", "xau"} == EVENTS_CURRENCIES


def test_codes_beyond_iso_4217_are_declared_to_the_core() -> None:
    beyond = {c.upper() for c in EVENTS_CURRENCIES} - CURRENCIES
    assert beyond == {"APE", "BGN", "BTC", "ETH", "USDT", "WHOP_USD"}
    assert WhopDestination.extra_currencies == beyond


def _readme_list(tag: str) -> set[str]:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(rf"<!-- currencies:{tag} -->(.*?)<!-- /currencies -->", readme, re.S)
    assert block, f"README.md has no currencies:{tag} list"
    return set(re.findall(r"`([a-z_]+)`", block.group(1)))


def test_the_readme_lists_what_the_code_takes() -> None:
    assert _readme_list("conversions") == CONVERSIONS_CURRENCIES
    assert _readme_list("events-extra") == EVENTS_CURRENCIES - CONVERSIONS_CURRENCIES


def test_a_crypto_value_reaches_whop(make_tracker: MakeTracker, sandbox: Sandbox) -> None:
    tracker = make_tracker()
    tracker.track("lead", event_id="eth-1", value=0.5, currency="ETH")
    tracker.track("lead", event_id="whop-usd-1", value=5, currency="whop_usd")
    assert tracker.flush(timeout=10).complete
    got = {r["event_id"]: r["body"]["currency"] for r in sandbox.received("whop")}
    assert got == {"eth-1": "eth", "whop-usd-1": "whop_usd"}
