"""MkDocs hooks: generate the reference tables from the code, so they cannot drift.

``{{ core_settings }}``, ``{{ consent_settings }}``, ``{{ vendor_common_settings }}`` and
``{{ vendor_settings }}`` in a page are replaced by tables built from ``postback.config``,
``postback.consent`` and every installed vendor plugin's settings class, event map, consent
purposes, dedupe window and delivery defaults.
"""

from __future__ import annotations

from typing import Any

from postback.config import CORE_HELP, VENDOR_COMMON_HELP, CoreSettings, settings_help
from postback.consent import CONSENT_HELP, ConsentSettings
from postback.plugins import PluginHost


def _core() -> str:
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    defaults = CoreSettings()
    for name, text in CORE_HELP.items():
        default = getattr(defaults, name)
        rows.append(f"| `{name}` | `{getattr(default, 'value', default)!r}` | {text} |")
    return "\n".join(rows)


def _consent() -> str:
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    defaults = ConsentSettings()
    shown = {"policy": repr(defaults.policy), "purposes": "[]", "gpc": repr(list(defaults.gpc))}
    rows += [f"| `{k}` | `{shown[k]}` | {v} |" for k, v in CONSENT_HELP.items()]
    return "\n".join(rows)


def _common() -> str:
    rows = ["| setting | meaning |", "|---|---|"]
    rows += [f"| `{k}` | {v} |" for k, v in VENDOR_COMMON_HELP.items()]
    return "\n".join(rows)


def _vendors() -> str:
    host = PluginHost()
    out: list[str] = []
    for name, cls in sorted(host.destinations.items()):
        info = next((i for i in host.infos.values() if name in i.destinations), None)
        dist = f"`{info.distribution}` {info.version}" if info and info.distribution else ""
        out.append(f"## {name}\n")
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        if doc:
            out.append(doc.replace("\n", " ") + "\n")
        out.append(
            f"Distribution: {dist}. Origin: `{cls.default_origin or '(from settings)'}`. "
            f"Events per request: {cls.max_batch_size}. Default rate limit: "
            f"{cls.default_rate_limit or 'none'}. Retry: up to "
            f"{cls.retry_policy.max_attempts} attempts within "
            f"{cls.retry_policy.max_age:g} s.\n"
        )
        out.append("| setting | default | secret | meaning |\n|---|---|---|---|")
        for fname, text, secret, default in settings_help(cls.settings_class):
            out.append(
                f"| `{fname}` | {default} | {'yes' if secret else ''} | {text.replace('|', '/')} |"
            )
        if cls.default_event_map:
            out.append("\n| canonical event | vendor event |\n|---|---|")
            out += [f"| `{k}` | `{v}` |" for k, v in sorted(cls.default_event_map.items())]
        if cls.accepts_custom_events:
            out.append("\nOther event names are sent as custom events.")
        dedupe = cls.default_dedupe_window
        out.append(
            f"\nConsent purposes needed: {', '.join(f'`{p}`' for p in cls.purposes)}. "
            + (
                f"Local dedupe window: {dedupe / 3600:g} h (the vendor has no dedupe key)."
                if dedupe
                else "Dedupes by itself (no local dedupe window)."
            )
        )
        if cls.option_keys:
            out.append(
                '\nPer-event options (`track(vendors={"'
                + name
                + '": {...}})`): '
                + ", ".join(f"`{k}`" for k in sorted(cls.option_keys))
                + "."
            )
        out.append("")
    return "\n".join(out) if out else "No vendor plugin is installed."


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "{{ core_settings }}" in markdown:
        markdown = markdown.replace("{{ core_settings }}", _core())
    if "{{ consent_settings }}" in markdown:
        markdown = markdown.replace("{{ consent_settings }}", _consent())
    if "{{ vendor_common_settings }}" in markdown:
        markdown = markdown.replace("{{ vendor_common_settings }}", _common())
    if "{{ vendor_settings }}" in markdown:
        markdown = markdown.replace("{{ vendor_settings }}", _vendors())
    return markdown
