"""Configuration: a TOML file, ``[tool.postback]`` in pyproject.toml, or a dict of the same shape.

::

    [postback]
    queue = "sqlite:///var/lib/myapp/postback.db"
    default_currency = "USD"

    [vendors.applovin]
    api_key = "${APPLOVIN_API_KEY}"
    pixel_id = "..."

Strings may reference environment variables as ``${NAME}`` or ``${NAME:-default}``, which is how
secrets should arrive, and any setting may be overridden by an environment variable
(``POSTBACK_QUEUE``, ``POSTBACK_VENDORS__APPLOVIN__API_KEY``: the environment wins). Loading
reports *every* problem at once, each with its key path (``vendors.x.hmac_key``), in one
:class:`~postback.ConfigError`: unknown keys (with a "did you mean"), wrong types, missing
settings and secrets, vendors that are configured but not installed (with the list of those
that are).

The package's modules, one job each:

* :mod:`~postback.config.structure`: the one structuring path every table goes through;
* :mod:`~postback.config.core`: the ``[postback]`` table (:class:`CoreSettings`);
* :mod:`~postback.config.vendors`: a ``[vendors.NAME]`` table (:class:`VendorConfig`);
* :mod:`~postback.config.env`: ``${NAME}`` references and ``POSTBACK_*`` overrides;
* :mod:`~postback.config.loading`: finding, reading and building a whole :class:`Config`.

This module re-exports their public names; import from ``postback.config``.
"""

from __future__ import annotations

from postback.config.core import (
    CORE_HELP,
    DEFAULT_QUEUE,
    CoreSettings,
    OnInvalid,
    SqliteSynchronous,
    Workers,
)
from postback.config.env import env_name
from postback.config.loading import (
    CONFIG_FILENAMES,
    Config,
    build_config,
    find_config,
    known_event_names,
    read_config,
)
from postback.config.structure import settings_converter, settings_help
from postback.config.vendors import VENDOR_COMMON_HELP, CommonSettings, VendorConfig
from postback.durations import parse_duration
from postback.setting_values import parse_rate_limit

__all__ = [
    "CONFIG_FILENAMES", "CORE_HELP", "DEFAULT_QUEUE", "VENDOR_COMMON_HELP", "CommonSettings",
    "Config", "CoreSettings", "OnInvalid", "SqliteSynchronous", "VendorConfig", "Workers",
    "build_config", "env_name", "find_config", "known_event_names", "parse_duration",
    "parse_rate_limit", "read_config", "settings_converter", "settings_help",
]  # fmt: skip
