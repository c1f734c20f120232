"""Routing: which configured vendors each event goes to, and why the others do not get it.

For every event ``track()`` accepts, :class:`Router`

1. picks the vendors it is *routed* to: configured and enabled, its name in the vendor's
   ``events`` filter (or, without one, mapped by the vendor), not opted out for this event
   (``vendors={"x": False}``). The result is cached per event name;
2. asks each of them what keeps it from sending the event: a per-event option it does not
   declare in ``option_keys`` (checked here, once, for every vendor: :func:`option_problems`),
   then ``postback_validate``: a :class:`~postback.Problem` (the event is malformed: refuse
   it) or a :class:`~postback.Skip` (this vendor cannot use it as given: leave it out);
3. applies the tracker's policy, side by side:

   ===================== ============================ ======================================
   setting               a Skip                       a Problem (canonical or a vendor's)
   ===================== ============================ ======================================
   default               vendor left out, others get  ``InvalidEvent`` listing every problem;
                         it; counted, logged once     nothing queued
   ``strict = true``     a problem (naming vendor     as above
                         and field)
   ``on_invalid="log"``  as default                   logged; a vendor's problem leaves that
                                                      vendor out, an unknown vendor in
                                                      ``vendors={...}`` is ignored, a
                                                      malformed event is dropped
   ===================== ============================ ======================================

4. accounts for what it left out: a skip goes to the :class:`~postback.skips.SkipLedger`
   (counted, logged once) and to ``postback_on_delivery`` as :class:`~postback.Skipped`; a name
   no vendor routes, or an unknown name close to a known one, is logged once with a
   did-you-mean.

:meth:`Router.explain` runs the same steps without any of the side effects and says, per
configured vendor, what would happen and why: ``tracker.explain()`` and
``postback send --dry-run`` show it.
"""

from __future__ import annotations

import difflib
import logging
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import attrs

from postback.consent import ConsentGate
from postback.destination import Destination, Skip, Skipped
from postback.errors import InvalidEvent, PluginError, Problem
from postback.events import CANONICAL_EVENTS, Event
from postback.iso import CURRENCIES
from postback.plugins import with_vendor
from postback.skips import DECISIONS, SkipLedger

__all__ = [
    "Explanation",
    "RouteStatus",
    "Router",
    "VendorRoute",
    "currency_skip",
    "option_problems",
    "skip_problem",
]

#: A destination's name (the vendors kept, listed without a comprehension's frame).
_NAME = operator.attrgetter("name")

log = logging.getLogger("postback")

RouteStatus = Literal["routed", "skipped", "refused", "not routed"]
#: Event names remembered (routes cached, warnings given) per tracker; beyond it, names are
#: routed without the cache and no longer warned about (an app generating names at runtime).
_NAME_CACHE_LIMIT = 4096


@attrs.frozen
class VendorRoute:
    """What happens to one event at one configured vendor, and why.

    ``status``: ``"routed"`` (the vendor takes it), ``"skipped"`` (it cannot use the event as
    given: ``skips`` say why, the first one counts), ``"refused"`` (the event is malformed for
    it: ``problems``), ``"not routed"`` (the name is not mapped or not in its ``events``
    filter, the vendor is opted out for this event, or disabled: ``reason``).
    """

    vendor: str
    status: RouteStatus
    reason: str = ""
    problems: tuple[Problem, ...] = ()
    skips: tuple[Skip, ...] = ()

    def __str__(self) -> str:
        return f"{self.vendor}: {self.status}" + (f": {self.reason}" if self.reason else "")


@attrs.frozen
class Explanation:
    """What ``track()`` would do with an event, per configured vendor (nothing is queued).

    ``error`` is the :class:`~postback.InvalidEvent` ``track()`` would raise (with this
    tracker's ``strict`` setting), or ``None``; ``queued`` names the vendors that would get the
    event (none when it would raise); ``problems`` lists what is wrong with the event itself
    (an unknown field, a bad value, an unknown vendor in ``vendors={...}``); ``vendors`` has a
    :class:`VendorRoute` for every configured vendor.
    """

    name: str
    event: Event | None
    problems: tuple[Problem, ...]
    vendors: Mapping[str, VendorRoute]
    queued: tuple[str, ...]
    error: InvalidEvent | None
    strict: bool = False

    @property
    def all_problems(self) -> list[Problem]:
        """Every problem with the event, the event's own and each vendor's (and, with
        ``strict``, every skip as one), whatever ``on_invalid`` does with them."""
        out = list(self.problems)
        for route in self.vendors.values():
            out.extend(route.problems)
            if self.strict:
                out.extend(skip_problem(s) for s in route.skips if s.reason not in DECISIONS)
        return out

    def by_status(self, status: RouteStatus) -> list[VendorRoute]:
        """The vendors with this status, in configuration order."""
        return [r for r in self.vendors.values() if r.status == status]

    @property
    def verdict(self) -> str:
        """One line: what ``track()`` would do."""
        if self.error is not None:
            return f"track() would raise InvalidEvent ({len(self.error.problems)} problem(s))"
        if not self.queued:
            return "track() would return an id and queue the event for no vendor"
        return f"track() would queue it for {', '.join(self.queued)}"

    def lines(self) -> list[str]:
        """The explanation as text lines (what ``postback send --dry-run`` prints)."""
        out = [f"{self.name!r}: {self.verdict}"]
        for p in self.problems:
            out.append(f"  problem: {p}")
        for route in self.vendors.values():
            out.append(f"  {route}")
            for p in route.problems:
                out.append(f"    - {p.field}: {p.message}")
            for s in route.skips:
                where = f"{s.field}: " if s.field else ""
                out.append(f"    - {where}{s.reason}" + (f" (fix: {s.fix})" if s.fix else ""))
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def currency_skip(vendor: str, currency: str) -> Skip:
    """The Skip of a vendor that does not take ``currency``, a code beyond ISO 4217 that
    another configured vendor declared (``Destination.extra_currencies``)."""
    return Skip(
        f"currency {currency} is not ISO 4217 and this vendor does not take it",
        field="currency",
        fix="send this vendor an ISO 4217 currency (e.g. 'USD')",
        vendor=vendor,
    )


def option_problems(dest: Destination, options: object) -> list[Problem]:
    """Problems with ``track(vendors={NAME: options})``: every key not in the vendor's
    ``option_keys``, with a did-you-mean. The core checks this once, for every vendor an
    event is routed to, so a vendor's ``validate`` sees only the keys it declared."""
    if not isinstance(options, Mapping) or not options:
        return []
    known = dest.option_keys
    name = dest.name
    found = []
    for key in options:
        if key in known:
            continue
        if not known:
            why = f"unknown option: {name} takes no per-event options; remove it"
        else:
            guess = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            why = f"unknown option for {name}{hint} ({name} takes: {', '.join(sorted(known))})"
        found.append(Problem(f"vendors.{name}.{key}", why, name))
    return found


def skip_problem(skip: Skip) -> Problem:
    """A skip as a problem, for ``strict = true``: names the vendor, the field and the fix."""
    fix = f"; {skip.fix}" if skip.fix else ""
    return Problem(skip.field or "event", f"{skip.reason} (strict mode){fix}", skip.vendor)


#: Validation of one event for one vendor through the hooks (``PluginHost.validate``).
Validate = Callable[[Event, Destination], Iterable[Problem | Skip]]
OnSkip = Callable[[str, Event, Skipped], None]


class Router:
    """Routes a tracker's events to its vendors and applies its strict/on_invalid policy."""

    def __init__(
        self,
        destinations: Mapping[str, Destination],
        filters: Mapping[str, frozenset[str] | None],
        validate: Validate,
        ledger: SkipLedger,
        *,
        strict: bool = False,
        raise_invalid: bool = True,
        on_skip: OnSkip | None = None,
        disabled: Iterable[str] = (),
        direct: bool = False,
        gate: ConsentGate | None = None,
    ) -> None:
        self.destinations = dict(destinations)
        self.filters = dict(filters)
        self.validate = validate
        #: Call each destination's ``validate`` without the hooks (only the core's
        #: ``postback_validate`` exists); findings may then lack ``vendor``.
        self.direct = direct
        self.ledger = ledger
        self.strict = strict
        self.raise_invalid = raise_invalid
        #: Called for every skip (vendor, event, Skipped); None when nobody listens.
        self.on_skip = on_skip
        self.disabled = tuple(disabled)
        #: Consent before validation: vendors whose purposes are not granted are left out.
        self.gate = gate
        self._by_name: dict[str, tuple[Destination, ...]] = {}
        self._names_by_name: dict[str, tuple[str, ...]] = {}  # the same, as vendor names
        #: Per name, for each of its routes: (user field, stamped Skip) when the vendor skips
        #: such an event without that field (``Destination.skip_without``); None when none do.
        self._quick_by_name: dict[str, tuple[tuple[str, Skip] | None, ...] | None] = {}
        self._known_names = self._names_configured()
        #: (id of a plugin's Skip without a vendor, vendor) -> (that Skip, its stamped copy)
        self._stamps: dict[tuple[int, str], tuple[object, Problem | Skip]] = {}

    # --- which vendors ---------------------------------------------------------------------------

    def _names_configured(self) -> frozenset[str]:
        """Canonical names plus every name a configured vendor maps or filters on."""
        names = set(CANONICAL_EVENTS)
        for name, dest in self.destinations.items():
            names.update(dest.event_map)
            names.update(self.filters[name] or ())
        return frozenset(names)

    def _routes_for(self, name: str) -> tuple[Destination, ...]:
        """The vendors a ``name`` event goes to by configuration (per-event options aside)."""
        routes = self._by_name.get(name)
        if routes is not None:
            return routes
        routes = tuple(
            dest
            for vname, dest in self.destinations.items()
            if (name in flt if (flt := self.filters[vname]) is not None else dest.supports(name))
        )
        if len(self._by_name) < _NAME_CACHE_LIMIT:
            self._by_name[name] = routes
            self._names_by_name[name] = tuple(d.name for d in routes)
            self._quick_by_name[name] = self._quick_skips(name, routes)
            self._warn_about_name(name, routes)
        return routes

    def _quick_skips(
        self, name: str, routes: tuple[Destination, ...]
    ) -> tuple[tuple[str, Skip] | None, ...] | None:
        """Per route, the user field without which it skips a ``name`` event (and the Skip,
        stamped), from ``Destination.skip_without``; None when no route says so. Only where
        each vendor's ``validate`` is called directly (no other plugin validates) and skips
        stay skips (not strict): otherwise ``validate`` always runs."""
        if not self.direct or self.strict:
            return None
        quick: list[tuple[str, Skip] | None] = []
        for dest in routes:
            try:
                said = dest.skip_without(name)
            except Exception:  # validate (which runs instead) reports a broken plugin
                said = None
            if (
                isinstance(said, tuple)
                and len(said) == 2
                and isinstance(said[0], str)
                and isinstance(said[1], Skip)
            ):
                skip = said[1]  # stamped as admit() would stamp it: the same object
                if skip.__class__ is not Skip or skip.vendor is None:
                    stamped = self._stamped(skip, dest.name)
                    skip = stamped if isinstance(stamped, Skip) else skip
                quick.append((said[0], skip))
            else:
                quick.append(None)
        return tuple(quick) if any(quick) else None

    def route(self, event: Event) -> list[Destination]:
        """The vendors ``event`` goes to: configured and enabled, mapped or in the ``events``
        filter, not opted out (``vendors={"x": False}``); an options table (or ``True``)
        routes an event a vendor does not map by default, unless its ``events`` filter says
        otherwise."""
        routes = self._routes_for(event.name)
        opts = event.vendor_options
        if not opts:
            return list(routes)
        out = []
        for vname, dest in self.destinations.items():
            opt = opts.get(vname)
            if opt is False:
                continue
            if dest in routes or (
                self.filters[vname] is None and (opt is True or isinstance(opt, Mapping))
            ):
                out.append(dest)
        return out

    def _warn_about_name(self, name: str, routes: tuple[Destination, ...]) -> None:
        """Once per name: say so when no vendor routes it, or when it looks misspelled."""
        if name in self._known_names and routes:
            return
        others = sorted(self._known_names - {name})  # never "did you mean" the name itself
        guess = difflib.get_close_matches(name, others, n=1, cutoff=0.75)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        if not routes:
            log.warning(
                "no configured vendor routes events named %r, so they are not queued for any "
                "vendor.%s Map the name in a vendor's [vendors.NAME] event_map (or list it in "
                "its events), or stop tracking it. Logged once per name.",
                name,
                hint,
            )
        elif guess:
            log.warning(
                "events named %r are neither canonical nor named in any vendor's event_map or "
                "events; they go only to %s, which take%s any name.%s Logged once per name.",
                name,
                ", ".join(d.name for d in routes),
                "s" if len(routes) == 1 else "",
                hint,
            )

    # --- the track() path -----------------------------------------------------------------------

    def admit(self, event: Event, consent: Mapping[str, bool] | None = None) -> Sequence[str]:
        """The names of the vendors ``event`` is to be queued for, after consent (``consent``:
        the user's, already checked), validation and this tracker's policy; records skips.
        Raises :class:`~postback.InvalidEvent` (unless ``on_invalid = "log"``).

        Written for the hot path: the vendors kept and each skipping vendor's first skip are
        collected in the one pass over the vendors' findings."""
        opts = event.vendor_options
        targets: Sequence[Destination]
        if opts:
            targets = self.route(event)
        else:  # _routes_for's cache read here first (an empty tuple asks it again: cheap)
            targets = self._by_name.get(event.name) or self._routes_for(event.name)
        gate = self.gate
        gated = gate is not None and (consent is not None or gate.always)
        denied: list[Skip] | None = None  # reported once the event is known to be accepted
        if gated:
            assert gate is not None
            targets, denied = gate.split(event, targets, consent)
        problems: list[Problem] | None = None
        skips: list[Skip] | None = None  # every skip (for strict mode and on_invalid = "log")
        first: list[Skip] | None = None  # each skipping vendor's first skip
        kept: list[str] | None = None  # the vendors left, once one has skipped
        validate, direct = self.validate, self.direct
        cur = event.currency
        exotic = cur is not None and cur not in CURRENCIES  # beyond ISO 4217 (Whop's ETH)
        # Vendors that skip this name without a user field, known without calling validate.
        quick = None if opts or gated else self._quick_by_name.get(event.name)
        has = event.user.__dict__.get if quick is not None else None
        for i, dest in enumerate(targets):
            skipped = None
            try:  # (free in 3.11 when nothing raises)
                if exotic and cur not in dest.extra_currencies:
                    found: Iterable[Problem | Skip] = [currency_skip(dest.name, cur or "")]
                elif quick is not None and (q := quick[i]) is not None and not has(q[0]):  # type: ignore[misc]
                    skipped = q[1]
                    if skips is None:
                        skips = [skipped]
                    else:
                        skips.append(skipped)
                    found = ()
                else:
                    found = dest.validate(event) if direct else validate(event, dest)
                if found:
                    for given in found:  # (a generator's code runs here)
                        if given.__class__ is Skip and given.vendor is not None:  # common case
                            finding: Problem | Skip = given
                        else:
                            finding = self._stamped(given, dest.name)
                        if isinstance(finding, Skip):
                            if skips is None:
                                skips = [finding]
                            else:
                                skips.append(finding)
                            if skipped is None:
                                skipped = finding
                        elif problems is None:
                            problems = [finding]
                        else:
                            problems.append(finding)
            except PluginError:
                raise
            except Exception as exc:
                raise validate_failed(dest, exc) from exc
            if skipped is not None:
                if first is None:
                    first, kept = [skipped], list(map(_NAME, targets[:i]))  # in C
                else:
                    first.append(skipped)
            elif kept is not None:
                kept.append(dest.name)
        unknown = None
        if opts:
            unknown = self._unknown_vendors(opts)
            for dest in targets:  # per-event options: only the keys each vendor declares
                if bad := option_problems(dest, opts.get(dest.name)):
                    problems = bad if problems is None else problems + bad
        # Consent skips are a decision, never a problem (even when strict), but are counted
        # only once the event is accepted: a refused event leaves no counts.
        if problems is None and unknown is None:
            if first is None:
                if denied:
                    self._report(event, denied)
                names = None if opts or gated else self._names_by_name.get(event.name)
                return names if names is not None else [d.name for d in targets]
            if not self.strict:
                assert kept is not None
                if denied:
                    self._report(event, denied)
                self._report(event, first)
                return kept
        settled = self._settle(event, targets, problems or [], skips or [], unknown or [], denied)
        return [d.name for d in settled]

    def _stamped(self, given: object, vendor: str) -> Problem | Skip:
        """``given`` naming ``vendor``: a plugin's Skip or Problem may leave it out. A Skip the
        plugin hands out again (built once, as the scaffold does) gets the same stamped copy
        each time: no copy per event, and the skip bookkeeping finds it by identity."""
        if getattr(given, "vendor", None) is not None or given.__class__ is not Skip:
            return with_vendor(given, vendor)  # (a Problem: the event is refused anyway)
        stamps = self._stamps
        hit = stamps.get((id(given), vendor))
        if hit is not None:  # (the entry holds the Skip: its id is not reused meanwhile)
            return hit[1]
        stamped = with_vendor(given, vendor)
        if len(stamps) >= _NAME_CACHE_LIMIT:  # Skips made anew per event: start again
            stamps.clear()
        stamps[(id(given), vendor)] = (given, stamped)
        return stamped

    def report(self, event: Event, skips: list[Skip]) -> None:
        """Count, log and report skips decided after routing (``duplicate``, from local
        dedupe as the event is stored): one per vendor."""
        self._report(event, skips)

    def _report(self, event: Event, first: list[Skip]) -> None:
        """Count, log and report each skipping vendor's first skip."""
        self.ledger.record(first, event)
        on_skip = self.on_skip
        if on_skip is not None:
            for s in first:
                on_skip(s.vendor or "", event, Skipped(s.reason))

    def _leave_out(
        self, event: Event, targets: Sequence[Destination], skips: list[Skip]
    ) -> list[Destination]:
        """Record the skips and drop those vendors. A vendor is skipped once per event: its
        first Skip is the one counted, logged and reported."""
        first: dict[str | None, Skip] = {}
        for s in skips:
            first.setdefault(s.vendor, s)
        self._report(event, list(first.values()))
        return [d for d in targets if d.name not in first]

    def _unknown_vendors(self, opts: Mapping[str, object]) -> list[Problem] | None:
        configured = ", ".join(sorted(self.destinations)) or "none"
        unknown = [
            Problem(
                f"vendors.{name}",
                f"is disabled ([vendors.{name}] enabled = false): nothing is sent to it; "
                "leave out its options, or enable it"
                if name in self.disabled
                else f"is not a configured vendor (configured: {configured})",
            )
            for name in opts
            if name not in self.destinations
        ]
        return unknown or None

    def _settle(
        self,
        event: Event,
        targets: Sequence[Destination],
        problems: list[Problem],
        skips: list[Skip],
        unknown: list[Problem],
        denied: list[Skip] | None = None,
    ) -> Sequence[Destination]:
        """Refuse the event, or log its problems and leave out the vendors refusing or
        skipping it. ``denied``: the consent skips, counted only if the event is accepted."""
        if self.strict and skips:
            problems = problems + [skip_problem(s) for s in skips]
            skips = []
        if (problems or unknown) and self.raise_invalid:
            raise InvalidEvent(event.name, unknown + problems)  # refused: nothing counted
        if denied:
            self._report(event, denied)
        if problems or unknown:
            for p in unknown:
                log.warning("event %r: ignored vendors option %s", event.name, p)
            if problems:
                refused = {p.vendor for p in problems}
                log.warning(
                    "event %r (%s) not sent to %s: %s",
                    event.name,
                    event.event_id,
                    ", ".join(sorted(v for v in refused if v)),
                    "; ".join(map(str, problems)),
                )
                targets = [d for d in targets if d.name not in refused]
        if skips:
            targets = self._leave_out(event, targets, skips)
        return targets

    # --- explain ---------------------------------------------------------------------------------

    def explain(self, event: Event, consent: Mapping[str, bool] | None = None) -> Explanation:
        """What :meth:`admit` would do with ``event``, per configured vendor; no side effects
        (nothing counted, logged or reported)."""
        routed = self.route(event)
        refused_by: dict[str, Skip] = {}
        gate = self.gate
        if gate is not None and (consent is not None or gate.always):
            routed, denied = gate.split(event, routed, consent)
            refused_by = {s.vendor or "": s for s in denied}
        opts = event.vendor_options
        unknown = tuple(self._unknown_vendors(opts) or ()) if opts else ()
        routes: dict[str, VendorRoute] = {}
        all_problems: list[Problem] = list(unknown)
        queued: list[str] = []
        for vname, dest in self.destinations.items():
            if vname in refused_by:
                skip = refused_by[vname]
                why = (
                    f"{skip.field}: not granted"
                    if skip.field != "consent"
                    else "consent: a postback_consent plugin said no"
                )
                routes[vname] = VendorRoute(vname, "skipped", why, (), (skip,))
                continue
            if dest not in routed:
                routes[vname] = VendorRoute(vname, "not routed", self._why_not(event, vname))
                continue
            cur = event.currency
            if cur is not None and cur not in CURRENCIES and cur not in dest.extra_currencies:
                findings: list[Problem | Skip] = [currency_skip(vname, cur)]
            else:
                try:
                    findings = [with_vendor(f, vname) for f in self.validate(event, dest)]
                except PluginError:
                    raise
                except Exception as exc:
                    raise validate_failed(dest, exc) from exc
            if opts:
                findings[:0] = option_problems(dest, opts.get(vname))
            problems = tuple(f for f in findings if not isinstance(f, Skip))
            skips = tuple(f for f in findings if isinstance(f, Skip))
            if problems:
                all_problems.extend(problems)
                routes[vname] = VendorRoute(
                    vname, "refused", "the event is malformed for this vendor", problems, skips
                )
            elif skips:
                if self.strict:
                    all_problems.extend(skip_problem(s) for s in skips)
                first = skips[0]
                why = f"{first.field}: {first.reason}" if first.field else first.reason
                routes[vname] = VendorRoute(vname, "skipped", why, (), skips)
            else:
                routes[vname] = VendorRoute(vname, "routed")
                queued.append(vname)
        for vname in self.disabled:
            why = f"disabled ([vendors.{vname}] enabled = false)"
            routes.setdefault(vname, VendorRoute(vname, "not routed", why))
        error = None
        if all_problems and self.raise_invalid:
            error = InvalidEvent(event.name, all_problems)
            queued = []
        elif all_problems:  # on_invalid = "log": the vendors with problems are left out
            refused = {p.vendor for p in all_problems}
            queued = [v for v in queued if v not in refused]
        return Explanation(
            name=event.name,
            event=event,
            problems=unknown,
            vendors=routes,
            queued=tuple(queued),
            error=error,
            strict=self.strict,
        )

    def _why_not(self, event: Event, vendor: str) -> str:
        opt = event.vendor_options.get(vendor) if event.vendor_options else None
        if opt is False:
            return f"opted out for this event (vendors={{{vendor!r}: False}})"
        flt = self.filters[vendor]
        if flt is not None:
            return f"{event.name!r} is not in [vendors.{vendor}] events"
        return (
            f"{vendor} does not map {event.name!r}: add it to [vendors.{vendor}.event_map] "
            "(or list it in events)"
        )

    @staticmethod
    def malformed(name: str, error: InvalidEvent, vendors: Iterable[str]) -> Explanation:
        """The explanation of an event whose canonical fields are malformed."""
        why = "the event itself is malformed (see the problems): nothing is queued"
        return Explanation(
            name=name,
            event=None,
            problems=tuple(error.problems),
            vendors={v: VendorRoute(v, "refused", why) for v in vendors},
            queued=(),
            error=error,
        )


def validate_failed(destination: Destination, exc: Exception) -> PluginError:
    """The error ``track()`` raises for a plugin's ``validate`` (the destination's or a
    ``postback_validate`` hook's) that raised ``exc``: naming the vendor, secrets removed."""
    text = destination.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    name = destination.name
    return PluginError(
        f"the plugin of vendor {name!r} failed in validate: {text} (a bug in the plugin: report "
        f"it to its authors, or leave the vendor out with [vendors.{name}] enabled = false)"
    )
