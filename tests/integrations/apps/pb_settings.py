"""The postback configuration shared by the test apps, from environment variables.

Server processes started by the tests get ``PB_TEST_EXAMPLE_URL`` (the sandbox's example
emulator), ``PB_TEST_QUEUE`` (a ``sqlite:///`` file in the test's tmp dir), ``PB_TEST_WORKERS``
and ``PB_TEST_PROXY_HOPS``.
"""

from __future__ import annotations

import os
from typing import Any

import pb_context_echo
import pb_pixel_fields

import postback.testing.example

PLUGINS = [postback.testing.example, pb_context_echo, pb_pixel_fields]


def postback_config() -> dict[str, Any]:
    return {
        "postback": {
            "queue": os.environ.get("PB_TEST_QUEUE", "memory://"),
            "workers": os.environ.get("PB_TEST_WORKERS", "true") == "true",
            "exit_timeout": 5,
        },
        "vendors": {
            "example": {
                "api_key": "sandbox-example-key",
                "base_url": "${PB_TEST_EXAMPLE_URL}",
                "linger": 0,
            }
        },
    }


def request_context() -> dict[str, Any]:
    return {"trusted_proxy_hops": int(os.environ.get("PB_TEST_PROXY_HOPS", "0"))}


def consent_cookie_reader(request: Any) -> dict[str, bool] | None:
    """The app's own consent banner stores "cc=ads" (granted) or "cc=none" (refused)."""
    value = request.COOKIES.get("cc") if hasattr(request, "COOKIES") else request.cookies.get("cc")
    return None if value is None else {"ads": value == "ads"}


#: Requests the counting reader was called for (one entry per call).
READER_CALLS: list[Any] = []


def counting_consent_reader(request: Any) -> dict[str, bool] | None:
    READER_CALLS.append(request)
    return {"ads": True}
