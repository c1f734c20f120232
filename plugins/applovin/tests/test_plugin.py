"""The plugin is found through its entry point and its emulator works with demo settings."""

from __future__ import annotations

import postback_applovin
from postback.plugins import PluginHost
from postback.sandbox import Sandbox
from postback.tracker import Tracker
from postback_applovin import AppLovinDestination, AppLovinEmulator


def test_entry_point_registers_destination_and_emulator() -> None:
    host = PluginHost()
    assert host.destinations["applovin"] is AppLovinDestination
    assert host.emulators["applovin"] is AppLovinEmulator
    info = host.infos["applovin"]
    assert info.error is None
    assert info.destinations == ("applovin",) and info.emulators == ("applovin",)
    assert set(postback_applovin.__all__) >= {
        "postback_register_destinations",
        "postback_register_emulators",
    }


def test_demo_settings_are_sandbox_only_and_complete() -> None:
    demo = AppLovinEmulator.demo_settings()
    assert set(demo) == {"api_key", "pixel_id"}
    assert all(v.startswith("sbx-") for v in demo.values())


def test_sandbox_from_plugins_with_demo_settings(tmp_path) -> None:
    host = PluginHost()
    with Sandbox.from_plugins({"applovin": host.emulators["applovin"]}) as box:
        config = box.config(queue=f"sqlite:///{tmp_path}/q.db")
        tracker = Tracker.from_config(config)
        try:
            tracker.track(
                "sign_up",
                event_id="demo-1",
                user={"user_id": "demo-user-1", "ip_address": "127.0.0.1", "user_agent": "demo"},
                context={"url": "https://demo.example/"},
                properties={"method": "email"},
            )
            assert tracker.flush(timeout=10).complete
        finally:
            tracker.close(timeout=0)
        assert [(r["event_id"], r["name"]) for r in box.received("applovin")] == [
            ("demo-1", "sign_up")
        ]
