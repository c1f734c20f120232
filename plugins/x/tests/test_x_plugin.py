"""The plugin contract: entry point, hooks, exported names, the sandbox mount."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import httpx

import postback_x
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from postback_x import XDestination, XEmulator


def test_entry_point_names_the_package() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="postback")}
    assert eps["x"].value == "postback_x"
    assert eps["x"].dist is not None and eps["x"].dist.name == "postback-x"


def test_plugin_host_finds_destination_and_emulator() -> None:
    host = PluginHost()
    assert host.destinations["x"] is XDestination
    assert host.emulators["x"] is XEmulator
    info = host.infos["x"]
    assert info.error is None
    assert "x" in info.destinations and "x" in info.emulators


def test_all_is_accurate() -> None:
    for name in postback_x.__all__:
        assert hasattr(postback_x, name), name
    assert "postback_register_destinations" in postback_x.__all__


def test_destination_class_attributes() -> None:
    assert XDestination.name == "x"
    assert XDestination.default_origin == "https://ads-api.x.com"
    assert XDestination.max_batch_size == 1
    assert not XDestination.accepts_custom_events
    assert XEmulator.vendor == "x"


def test_sandbox_from_plugins_serves_x_under_its_prefix(kit: Any) -> None:
    host = PluginHost()
    with Sandbox.from_plugins({"x": host.emulators["x"]}) as sandbox:
        cfg = sandbox.vendor_config("x")
        assert cfg["base_url"].endswith("/x")
        dest = kit.destination(base_url=cfg["base_url"])
        request = dest.build_request(kit.prepared(dest, kit.event()))
        # The request is signed over http://127.0.0.1:PORT/x/12/...; the sandbox strips /x
        # before the emulator sees it, and the emulator still verifies the signature.
        with httpx.Client() as client:
            response = client.send(request)
        assert response.status_code == 200, response.text
        assert sandbox.received("x")[0]["name"] == "PURCHASE"
