"""Helpers for the dashboard's tests: call pages as a browser would, wait for a condition."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from postback.dashboard import Dashboard
from postback.dashboard.http import Request, Response, parse_query

PERSON = {"email": "jane.doe@example.com", "phone": "+14155550123", "ip_address": "203.0.113.77"}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Pages:
    """Call a dashboard's pages as a browser would (cookies kept)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.cookies: dict[str, str] = {}

    def call(self, method: str, path: str, form: dict[str, str] | None = None) -> Response:
        path, _, query = path.partition("?")
        response = self.dashboard.handle(
            Request(
                method=method,
                path=path,
                query=parse_query(query),
                form=form or {},
                cookies=dict(self.cookies),
                host="127.0.0.1",
            )
        )
        for key, value in response.headers:
            if key == "Set-Cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response

    def get(self, path: str) -> str:
        response = self.call("GET", path)
        assert response.status == 200, (path, response.status, response.body[:500])
        return response.body.decode()

    def token(self, path: str) -> str:
        match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', self.get(path))
        assert match, f"no CSRF token on {path}"
        return match[1]
