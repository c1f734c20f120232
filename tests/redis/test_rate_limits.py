"""What the shared rate limits use of ``limits``, pinned: the internals our server-clock
storages override or call keep their signatures, and ``limits``' own Redis storage reads the
windows ours write (same key layout, same list of hit times), so a ``limits`` upgrade that
changes either fails here instead of silently splitting the window."""

from __future__ import annotations

import inspect
import subprocess
import sys
import uuid
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest
from limits import RateLimitItemPerMinute
from limits.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from postback.delivery.redis.ratelimit import LIMITS_INTERNALS, shared_rate_storage
from postback.delivery.redis.scripts import SCRIPTS, lua
from postback.delivery.redis.urls import parse_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("storage", [RedisStorage, RedisSentinelStorage, RedisClusterStorage])
def test_the_internals_we_use_keep_their_signatures(storage: type) -> None:
    for method, params in LIMITS_INTERNALS.items():
        found = getattr(storage, method, None)
        assert callable(found), f"limits' {storage.__name__} has no {method}() any more"
        names = tuple(inspect.signature(found).parameters)
        assert names == params, f"{storage.__name__}.{method}{names}: we rely on {params}"


def test_limits_reads_the_windows_we_write_and_we_read_its(redis_base_url: str) -> None:
    prefix = f"rl-{uuid.uuid4().hex[:8]}"
    ours = shared_rate_storage(parse_url(redis_base_url), prefix)
    theirs = RedisStorage(redis_base_url, key_prefix=prefix)
    item = RateLimitItemPerMinute(3)
    mine, plain = MovingWindowRateLimiter(ours), MovingWindowRateLimiter(theirs)
    assert mine.hit(item, "vendor", "cred") and mine.hit(item, "vendor", "cred")
    assert plain.get_window_stats(item, "vendor", "cred").remaining == 1
    assert plain.hit(item, "vendor", "cred")
    assert not mine.hit(item, "vendor", "cred"), "our window must count limits' own hit"
    assert mine.get_window_stats(item, "vendor", "cred").remaining == 0
    theirs.reset()


def test_the_lua_scripts_are_package_data() -> None:
    folder = files("postback.delivery.redis").joinpath("lua")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".lua"))
    assert names == sorted([f"{s}.lua" for s in SCRIPTS] + ["fields.lua"])
    fields = folder.joinpath("fields.lua").read_text()
    assert lua("claim").startswith(fields) and not lua("put").startswith(fields)


def test_the_wheel_ships_the_lua_scripts(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(ROOT), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("postback-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for script in (*SCRIPTS, "fields"):
        assert f"postback/delivery/redis/lua/{script}.lua" in shipped
