"""The ``postback`` pytest plugin (entry point ``pytest11``): fixtures for app and plugin
authors."""
