"""The Django ``AppConfig``: system checks for the settings, and a tracker reset when tests
change them.

``manage.py check`` reports malformed ``POSTBACK*`` settings (``postback.E001``);
``manage.py check --deploy`` also validates the configuration itself (``postback.E002``:
unknown keys, missing secrets, vendors not installed). The configuration check is a deploy
check because it needs the secrets, which a CI job running ``migrate`` usually lacks.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed

__all__ = ["PostbackConfig"]


class PostbackConfig(AppConfig):  # type: ignore[misc]  # django ships no type hints
    name = "postback.integrations.django"
    label = "postback"
    verbose_name = "postback"

    def ready(self) -> None:
        checks.register(check_settings, "postback")
        checks.register(check_configuration, "postback", deploy=True)
        setting_changed.connect(_on_setting_changed, dispatch_uid="postback-settings")


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from postback.integrations.django.conf import check_settings as problems

    return [
        checks.Error(
            str(p),
            hint="see postback.integrations.django.conf for the settings",
            id="postback.E001",
        )
        for p in problems()
    ]


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from postback.integrations.django.conf import check_config, check_settings

    if check_settings():
        return []  # E001 already says what to fix first
    return [
        checks.Error(
            str(p), hint="fix settings.POSTBACK (or the file it names)", id="postback.E002"
        )
        for p in check_config()
    ]


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("POSTBACK"):
        from postback.integrations.django import reset_tracker

        reset_tracker(timeout=0)
