"""The dashboard in a real headless Chromium (Debian's, driven by Selenium): every page opens,
an event is looked up, a dead letter is replayed and the sandbox receives it.

Screenshots of the main pages go to docs/img/dashboard/ when POSTBACK_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postback.dashboard import Dashboard, serve
from tests.dashboard.browser import start_driver
from tests.dashboard.support import PERSON, wait_for

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard"


@pytest.fixture
def driver() -> Iterator[Any]:
    d = start_driver()
    d.set_page_load_timeout(15)
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def ui(dashboard: Dashboard) -> Iterator[str]:
    server = serve(dashboard, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _shot(driver: Any, name: str, width: int = 1280, height: int = 900) -> None:
    driver.set_window_size(width, height)
    if os.environ.get("POSTBACK_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_dashboard_in_a_browser(driver, ui, tracker, sandbox, dead_letter) -> None:
    from selenium.webdriver.common.by import By

    for i in range(3):
        tracker.track("purchase", user=PERSON, value=10 + i, currency="USD", event_id=f"ok-{i}")
    tracker.flush(5)
    dead_id = dead_letter("order-1042")
    sandbox.set_fault("example", status=503)  # one event left waiting for its retry
    tracker.track("signup", user=PERSON, event_id="order-1043")
    wait_for(lambda: tracker.stats()["example"]["retrying"], "a retry")

    driver.get(ui + "/")
    assert driver.find_element(By.CSS_SELECTOR, '[data-vendor="example"]')
    wait_for(
        lambda: driver.find_element(By.ID, "lanes").get_attribute("data-refreshed"),
        "a live refresh",
    )
    _shot(driver, "lanes")

    driver.find_element(By.LINK_TEXT, "Deliveries").click()
    assert "ok-0" in driver.page_source and PERSON["email"] not in driver.page_source
    _shot(driver, "deliveries")

    driver.find_element(By.LINK_TEXT, "Event lookup").click()
    box = driver.find_element(By.ID, "event-id")
    box.send_keys("order-1042")
    box.submit()
    wait_for(lambda: "dead-lettered" in driver.page_source, "the lookup's answer")
    _shot(driver, "event-lookup")

    driver.find_element(By.LINK_TEXT, f"Dead letter {dead_id}").click()
    source = driver.page_source
    assert "j•••@e•••.com" in source and PERSON["email"] not in source
    _shot(driver, "dead-letter")

    sandbox.clear_faults()
    driver.find_element(By.LINK_TEXT, "Replay…").click()
    driver.find_element(By.ID, "confirm").click()
    wait_for(lambda: f"replayed {dead_id}" in driver.page_source, "the replay's confirmation")
    wait_for(
        lambda: any(e.get("event_id") == "order-1042" for e in sandbox.received("example")),
        "the replayed event at the sandbox",
    )
    assert tracker.queue.dead_letter(dead_id) is None

    driver.find_element(By.LINK_TEXT, "Config").click()
    assert "[vendors.example]" in driver.page_source
    assert tracker.config.vendors["example"].settings.api_key.reveal() not in driver.page_source
    _shot(driver, "config")

    driver.get(ui + "/")  # a phone's width: nothing wider than the screen
    _shot(driver, "lanes-phone", 390, 844)
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= driver.execute_script("return window.innerWidth") + 1
