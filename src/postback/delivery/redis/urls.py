"""Redis queue URLs: what ``redis://``, ``rediss://``, ``redis+sentinel://`` and
``redis+cluster://`` name, with postback's own query parameters (``prefix``,
``visibility_timeout``) taken out and the password kept out of anything shown.

Pure parsing: no connection, no import of the Redis client until redis-py's own query-parameter
parsers are needed (:func:`typed_options`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import attrs

from postback.config import parse_duration
from postback.errors import ConfigError, ConfigProblem

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_VISIBILITY_TIMEOUT",
    "RedisTarget",
    "parse_url",
    "split_hosts",
    "typed_options",
]

DEFAULT_PREFIX = "postback"
DEFAULT_VISIBILITY_TIMEOUT = 60.0


def split_hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``h1:p1,[::1]:p2`` -> [(h1, p1), ("::1", p2)]."""
    hosts = []
    for item in netloc.split(","):
        part = item.strip()
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = part.rpartition(":") if part.count(":") == 1 else (part, "", "")
        hosts.append((host, int(port) if port else default_port))
    return hosts


def typed_options(options: dict[str, str]) -> dict[str, Any]:
    """Query parameters typed as redis-py types them in its own URL parser."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    parsers: dict[str, Any] = dict(URL_QUERY_ARGUMENT_PARSERS)
    typed: dict[str, Any] = {}
    for key, value in options.items():
        parser = parsers.get(key)
        typed[key] = parser(value) if parser else value
    return typed


@attrs.frozen
class RedisTarget:
    """What a queue URL names, with postback's own parameters taken out."""

    scheme: str
    client_url: str  # the URL without postback's parameters (redis-py / limits read it)
    safe_url: str  # for error messages: scheme, host and path only
    display_url: str  # the whole URL with passwords masked (``queue.url``: logs, stats)
    prefix: str
    visibility_ms: int
    options: dict[str, str]


def _database_problems(
    scheme: str, path: str, options: list[tuple[str, str]], display: str
) -> list[str]:
    """A database number that is not a number: redis-py ignores a ``/abc`` path (database 0,
    another app's data perhaps), so it is refused here, with the URL's password masked. Read
    as redis-py reads it: a blank ``?db=`` is ignored, and a ``?db=`` given wins over the path
    (which is then not checked)."""
    dbs = [("?db=" + v, v) for k, v in options if k == "db" and v]
    segments = [p for p in unquote(path).split("/") if p]
    if dbs:
        pass  # the query's database is the one used
    elif scheme in ("redis", "rediss") and path.strip("/"):
        dbs.append((path, "/".join(segments)))
    elif scheme == "redis+sentinel" and len(segments) > 1:
        dbs.append((path, "/".join(segments[1:])))
    example = {
        "redis+sentinel": "redis+sentinel://host:26379/mymaster/0",
        "unix": "unix:///path/to/redis.sock?db=0",
    }.get(scheme, f"{scheme}://host:6379/0")
    return [
        f"the database {written!r} in the queue URL {display} is not a number: write the "
        f"database's number, e.g. {example} for database 0"
        for written, db in dbs
        if not (db.isascii() and db.isdigit())
    ]


def parse_url(url: str) -> RedisTarget:
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": an unclosed [ (never quote it: a password)
        raise ConfigError(
            [
                ConfigProblem(
                    "postback.queue",
                    "is not a valid Redis URL (an IPv6 host is written in brackets, "
                    "redis://[::1]:6379/0)",
                )
            ]
        ) from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in ("prefix", "visibility_timeout")}
    rest = [(k, v) for k, v in query if k not in own]
    problems = []
    prefix = own.get("prefix", DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in "{}: \t\n"):
        problems.append(
            f"prefix={prefix!r} in the queue URL must be a non-empty name without braces, "
            "colons or spaces (e.g. ?prefix=myapp)"
        )
    visibility = DEFAULT_VISIBILITY_TIMEOUT
    if "visibility_timeout" in own:
        try:
            visibility = parse_duration(own["visibility_timeout"])
        except ValueError as exc:
            problems.append(f"visibility_timeout in the queue URL {exc}")
        else:
            if visibility < 1:
                problems.append(
                    "visibility_timeout in the queue URL must be at least 1 second (it is how "
                    "long a dead worker's events wait before others take them over)"
                )
    host = parts.hostname or ""
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    user = (
        f"{parts.username or ''}:***@"
        if parts.password
        else (f"{parts.username}@" if parts.username else "")
    )
    shown = [(k, "***" if "password" in k.lower() else v) for k, v in query]
    display = urlunsplit(
        (parts.scheme, user + (netloc or host), parts.path, urlencode(shown, safe="*"), "")
    )
    problems.extend(_database_problems(parts.scheme.lower(), parts.path, rest, display))
    if problems:
        raise ConfigError([ConfigProblem("postback.queue", p) for p in problems])
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    safe = urlunsplit((parts.scheme, netloc or host, parts.path, "", ""))
    return RedisTarget(
        scheme=parts.scheme,
        client_url=client_url,
        safe_url=safe,
        display_url=display,
        prefix=prefix,
        visibility_ms=int(visibility * 1000),
        options=dict(rest),
    )
