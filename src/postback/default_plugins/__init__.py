"""The core's own behaviour, shipped as plugins (see ``postback.plugins.DEFAULT_PLUGINS``)."""
