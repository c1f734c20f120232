"""Consent: which purposes a user granted, which each vendor needs, and who is left out.

A *purpose* is what personal data is used for. Two are built in, more can be declared in the
``[consent]`` table:

=================  ==========================================================================
``ads``            sending events to advertising and attribution vendors (ad targeting,
                   campaign attribution, conversion optimisation): every seed vendor
``measurement``    counting and analysing conversions without advertising use
=================  ==========================================================================

Every vendor declares the purposes it needs (``Destination.purposes``, ``("ads",)`` unless a
plugin says otherwise); ``[vendors.NAME] purposes = [...]`` overrides it. ``track(...,
consent={"ads": False})`` carries the user's decision, a mapping of purpose to granted or not;
a purpose it does not mention is decided by ``[consent] policy``:

- ``"assume_granted"`` (the default): absent means granted. Right where consent is an opt-out
  (the US states' model, with Global Privacy Control honoured by the web integrations), and
  it keeps apps that never pass ``consent`` working as before;
- ``"require"``: absent means not granted: nothing goes to a vendor unless every purpose it
  needs was granted. Right where consent is an opt-in (GDPR, ePrivacy).

``docs/explanation/consent.md`` gives the reasoning behind the default.

:class:`ConsentGate` applies it in ``track()`` *before* the event is queued: a vendor whose
purposes are not all granted is left out of the event (it is never stored for that vendor),
counted and reported as a skip with reason ``"consent"``, never an error (not even with
``strict = true``). The order of the rules: an explicit ``False`` in ``consent`` denies; else
a ``postback_consent`` plugin (a consent-management integration) may decide for the event and
vendor (``True``/``False``); else every purpose the vendor needs must be granted, explicitly or
by the policy. With the default policy, no ``consent`` passed and no ``postback_consent``
plugin, the gate costs nothing.

This module also parses the ``[consent]`` table and the ``purposes`` vendor setting, so that
:mod:`postback.config` only wires them in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import attrs

from postback.destination import Destination, Skip
from postback.errors import ConfigProblem, Problem, brief_repr, brief_str
from postback.events import Event
from postback.normalize import Unreadable, read_mapping

__all__ = [
    "BUILTIN_PURPOSES",
    "CONSENT",
    "POLICIES",
    "ConsentGate",
    "ConsentSettings",
    "build_consent_settings",
    "checked_consent",
    "parse_consent",
    "parse_vendor_purposes",
]

#: The purposes every configuration knows, with what they cover.
BUILTIN_PURPOSES: Mapping[str, str] = {
    "ads": "sending events to advertising and attribution vendors",
    "measurement": "counting and analysing conversions, without advertising use",
}
#: What ``[consent] policy`` may say about a purpose ``track(consent=...)`` does not mention.
POLICIES = ("assume_granted", "require")
#: The skip reason of a vendor left out for lack of consent (``tracker.stats()`` counts it).
CONSENT = "consent"

Policy = Literal["assume_granted", "require"]
#: ``postback_consent`` through the plugin host: ``(event, destination, consent) -> bool|None``.
ConsentHook = Callable[[Event, Destination, Mapping[str, bool] | None], bool | None]

CONSENT_HELP: dict[str, str] = {
    "policy": "What a purpose that track(consent=...) does not mention means: "
    "'assume_granted' (the default: granted unless the user opted out) or 'require' "
    "(not granted unless the user opted in).",
    "purposes": "Purposes beyond the built-in 'ads' and 'measurement', e.g. ['analytics'].",
    "gpc": "Purposes a request with 'Sec-GPC: 1' (Global Privacy Control) opts out of in the "
    "web integrations (default ['ads']; [] to ignore the header).",
}


@attrs.frozen
class ConsentSettings:
    """The ``[consent]`` table, validated."""

    policy: Policy = "assume_granted"
    #: Every known purpose: the built-in ones plus those the table declares.
    purposes: frozenset[str] = frozenset(BUILTIN_PURPOSES)
    #: Purposes ``Sec-GPC: 1`` opts out of in the web integrations.
    gpc: tuple[str, ...] = ("ads",)


def _purpose_list(
    value: object, path: str, problems: list[ConfigProblem], known: Iterable[str] | None
) -> tuple[str, ...] | None:
    """A list of purpose names (each known, when ``known`` is given), or None after a problem."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        problems.append(
            ConfigProblem(path, f"must be a list of purposes such as ['ads'], got {value!r}")
        )
        return None
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        problems.append(ConfigProblem(path, f"purposes must be non-empty strings, got {bad!r}"))
        return None
    names = tuple(dict.fromkeys(v.strip() for v in value))
    if known is not None:
        known_set = set(known)
        unknown = [n for n in names if n not in known_set]
        if unknown:
            problems.append(
                ConfigProblem(
                    path,
                    f"unknown purpose(s) {', '.join(map(repr, unknown))}; known: "
                    f"{', '.join(sorted(known_set))} (declare more in [consent] purposes)",
                )
            )
            return None
    return names


def build_consent_settings(raw: object, problems: list[ConfigProblem]) -> ConsentSettings:
    """Validate the ``[consent]`` table (``None`` when absent); add every problem found."""
    if raw is None:
        return ConsentSettings()
    if not isinstance(raw, Mapping):
        problems.append(ConfigProblem("consent", "must be a table"))
        return ConsentSettings()
    n_before = len(problems)
    for key in raw:
        if key not in CONSENT_HELP:
            problems.append(
                ConfigProblem(
                    f"consent.{key}", f"unknown setting; known: {', '.join(CONSENT_HELP)}"
                )
            )
    policy = raw.get("policy", "assume_granted")
    if policy not in POLICIES:
        problems.append(
            ConfigProblem(
                "consent.policy",
                f"must be 'assume_granted' or 'require', got {policy!r} "
                "(see docs/explanation/consent.md)",
            )
        )
    declared = _purpose_list(raw.get("purposes", []), "consent.purposes", problems, None) or ()
    purposes = frozenset(BUILTIN_PURPOSES) | frozenset(declared)
    gpc = _purpose_list(raw.get("gpc", ["ads"]), "consent.gpc", problems, purposes)
    if len(problems) > n_before:
        return ConsentSettings()
    return ConsentSettings(policy=policy, purposes=purposes, gpc=gpc or ())


def parse_vendor_purposes(
    value: object, path: str, settings: ConsentSettings | None, problems: list[ConfigProblem]
) -> tuple[str, ...] | None:
    """``[vendors.NAME] purposes``: the purposes that vendor needs, each known."""
    return _purpose_list(value, path, problems, (settings or ConsentSettings()).purposes)


def parse_consent(consent: object, known: frozenset[str]) -> list[Problem]:
    """What is wrong with ``track(consent=...)``: it must map known purposes to booleans."""
    return checked_consent(consent, known)[1]


def checked_consent(
    consent: object, known: frozenset[str]
) -> tuple[Mapping[str, bool] | None, list[Problem]]:
    """``track(consent=...)`` as the gate and ``postback_consent`` plugins read it, and what
    is wrong with it. A plain dict of known purposes to booleans (the common case) is returned
    as given, nothing copied; a dict subclass or another mapping is read once into a plain
    dict (keys plain, by :func:`~postback.normalize.read_mapping`: a subclass's overrides are
    never called), and one whose reading raises is a problem naming ``consent``."""
    if consent.__class__ is dict:
        for purpose, granted in consent.items():
            if purpose.__class__ is not str or purpose not in known:
                break
            if granted is not True and granted is not False:
                break
        else:
            return consent, []
    elif not isinstance(consent, Mapping):
        return None, [
            Problem(
                "consent",
                f"must be a mapping of purpose to True/False, e.g. {{'ads': False}}, "
                f"got {type(consent).__name__}",
            )
        ]
    try:
        data = read_mapping(consent)
    except Unreadable as exc:
        return None, [Problem("consent", exc.message)]
    problems = []
    for purpose, granted in data.items():
        try:
            is_known = purpose in known
        except Exception:  # unhashable, or a key whose own __hash__ or __eq__ raises
            is_known = False
        if not is_known:
            problems.append(
                Problem(
                    f"consent.{brief_str(purpose)}",
                    f"unknown purpose; known: {', '.join(sorted(known))} (declare more in "
                    "[consent] purposes)",
                )
            )
        elif granted is not True and granted is not False:
            problems.append(
                Problem(f"consent.{purpose}", f"must be True or False, got {brief_repr(granted)}")
            )
    return data, problems  # type: ignore[return-value]


class ConsentGate:
    """Decides, per event, which routed vendors the user's consent lets the event reach.

    Built once per tracker from its ``[consent]`` settings, the purposes each vendor needs and
    the ``postback_consent`` hook (``None`` when no plugin implements it).
    """

    def __init__(
        self,
        settings: ConsentSettings,
        needs: Mapping[str, Sequence[str]],
        hook: ConsentHook | None = None,
    ) -> None:
        self.settings = settings
        self.hook = hook
        self.assume = settings.policy == "assume_granted"
        #: Whether every event is checked, even without ``consent``: under ``"require"``,
        #: or when a plugin decides.
        self.always = not self.assume or hook is not None
        #: The purposes each vendor needs (config, else its destination's ``purposes``).
        self.needs: dict[str, tuple[str, ...]] = {name: tuple(p) for name, p in needs.items()}
        self._skips: dict[tuple[str, tuple[str, ...]], Skip] = {}

    def skip(self, vendor: str, missing: tuple[str, ...]) -> Skip:
        """The (cached) consent skip of ``vendor`` for the purposes ``missing``."""
        key = (vendor, missing)
        found = self._skips.get(key)
        if found is None:
            which = ", ".join(missing) if missing else "a consent plugin said no"
            found = self._skips[key] = Skip(
                CONSENT,
                field="consent." + missing[0] if missing else "consent",
                fix=f"not granted: {which}. Not an error: the user's choice is respected "
                "(pass track(consent={...}) when the user grants it)",
                vendor=vendor,
            )
        return found

    def missing(
        self, event: Event, dest: Destination, consent: Mapping[str, bool] | None
    ) -> tuple[str, ...] | None:
        """The purposes ``dest`` needs that are not granted for ``event`` (``()`` when a
        plugin said no), or ``None`` when the event may go to it."""
        needs = self.needs.get(dest.name, ("ads",))
        if consent is not None:
            denied = tuple(p for p in needs if consent.get(p) is False)
            if denied:
                return denied
        if self.hook is not None:
            decided = self.hook(event, dest, consent)
            if decided is True:
                return None
            if decided is False:
                return ()
        if self.assume:
            return None
        absent = tuple(p for p in needs if consent is None or consent.get(p) is not True)
        return absent or None

    def split(
        self,
        event: Event,
        targets: Sequence[Destination],
        consent: Mapping[str, bool] | None,
    ) -> tuple[list[Destination], list[Skip]]:
        """``targets`` the event may reach, and a consent skip for each of the others."""
        kept: list[Destination] = []
        skips: list[Skip] = []
        for dest in targets:
            missing = self.missing(event, dest, consent)
            if missing is None:
                kept.append(dest)
            else:
                skips.append(self.skip(dest.name, missing))
        return kept, skips
