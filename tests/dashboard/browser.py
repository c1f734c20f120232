"""Find (or, as root with apt, install once) Debian's chromium and chromedriver for the browser
tests, and start a headless Selenium session; skip with the reason when that is impossible."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

APT_LOCK = Path("/tmp/postback-chromium-apt.lock")
APT_TIMEOUT = 600  # seconds for apt-get update + install, once per machine


def _found() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver"
        if os.path.exists("/usr/lib/chromium/chromedriver")
        else None
    )
    return (browser, driver) if browser and driver else None


def _install() -> str | None:
    """Install chromium and chromium-driver with apt; None when done, else why not."""
    if os.geteuid() != 0:
        return "not root, so cannot apt-get install chromium chromium-driver"
    if shutil.which("apt-get") is None:
        return "no apt-get to install chromium chromium-driver with"
    with APT_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (xdist workers, parallel runs)
        if _found():
            return None
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            for cmd in (
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
            ):
                subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=APT_TIMEOUT)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"apt-get install chromium chromium-driver failed: {exc}"
    return None


def chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing them if needed and possible; else skip."""
    found = _found()
    if found is None:
        problem = _install()
        found = _found()
        if found is None:
            pytest.skip(problem or "chromium/chromedriver not found after installing them")
    return found


def start_driver(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium driven by Selenium (never Selenium Manager's downloads)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in postback[test]")
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
