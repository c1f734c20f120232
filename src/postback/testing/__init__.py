"""Test helpers for app authors and plugin authors (also the ``postback`` pytest plugin)."""
