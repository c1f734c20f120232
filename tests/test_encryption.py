"""Optional encryption of stored events (POSTBACK_ENCRYPTION_KEYS): keys and rotation, and on a
SQLite file nothing of the person is readable in the queue file or the spool, while the vendor
gets the event. Redis: tests/redis/test_privacy_redis.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from postback import Tracker
from postback.encryption import Keyring, UnknownKey, keyring_from_env, open_payload
from postback.errors import ConfigError
from postback.sandbox import Sandbox
from tests.encryption_support import EMAIL, check_sealed_delivery, new_key, use_keys
from tests.privacy_support import wait


def test_seal_open_and_rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = new_key(), new_key()
    use_keys(monkeypatch, f"k1:{k1}")
    old = keyring_from_env()
    assert isinstance(old, Keyring) and "k1" in repr(old) and k1 not in repr(old)
    sealed = old.seal(b'{"a":1}')
    assert sealed.startswith(b"~e1:k1:") and b'"a"' not in sealed
    assert old.seal(b'{"a":1}') != sealed  # a fresh nonce each time
    use_keys(monkeypatch, f"k2:{k2}, k1:{k1}")  # rotated: k2 seals, k1 still opens
    assert open_payload(sealed) == b'{"a":1}'
    ring = keyring_from_env()
    assert ring is not None and ring.seal(b"{}").startswith(b"~e1:k2:")
    assert open_payload(b'{"plain":true}') == b'{"plain":true}'  # plain events still read
    use_keys(monkeypatch, f"k2:{k2}")
    with pytest.raises(UnknownKey, match="key id 'k1'"):
        open_payload(sealed)
    monkeypatch.delenv("POSTBACK_ENCRYPTION_KEYS")
    assert keyring_from_env() is None
    with pytest.raises(UnknownKey, match="not set"):
        open_payload(sealed)


def test_bad_keys_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, "nokey, k1:!!!, k2:" + new_key()[:10])
    with pytest.raises(ConfigError) as info:
        keyring_from_env()
    text = str(info.value)
    assert "entry 1 must be KEYID:BASE64KEY" in text and "'k1' is not valid base64" in text


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_variable_is_refused_not_encryption_off(
    monkeypatch: pytest.MonkeyPatch, make_tracker: Callable[..., Tracker], value: str
) -> None:
    """``POSTBACK_ENCRYPTION_KEYS=`` (compose's ``${UNSET}``, a blank ConfigMap value) is a
    deployment mistake: refused at start-up, not events stored in plaintext; unset is off."""
    use_keys(monkeypatch, value)
    with pytest.raises(ConfigError) as info:
        keyring_from_env()
    text = str(info.value)
    assert "POSTBACK_ENCRYPTION_KEYS" in text and "it is empty" in text
    assert "unset it to store events unencrypted" in text
    with pytest.raises(ConfigError, match="POSTBACK_ENCRYPTION_KEYS"):
        make_tracker(core={"workers": False})
    monkeypatch.delenv("POSTBACK_ENCRYPTION_KEYS")
    assert keyring_from_env() is None
    make_tracker(core={"workers": False}).close(timeout=0)


def _stored(tmp_path: Path) -> bytes:
    """Every byte of the queue file, its WAL, its spool segments and side files."""
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "queue.db" in str(p)]
    assert any(".spool" in str(p) for p in files)
    return b"".join(p.read_bytes() for p in files)


def test_sqlite_stores_only_ciphertext(
    make_tracker: Callable[..., Tracker],
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_keys(monkeypatch, f"k1:{new_key()}")
    quiet = make_tracker(core={"workers": False})
    quiet.track("purchase", user={"email": EMAIL}, value=5, currency="USD", event_id="q-1")
    stored = _stored(tmp_path)
    assert b"q-1" in stored and EMAIL.encode() not in stored  # the spool holds it sealed
    quiet.close(timeout=0)
    t = make_tracker()
    check_sealed_delivery(t, sandbox)
    t.flush(timeout=5)
    stored = _stored(tmp_path)
    assert EMAIL.encode() not in stored


def test_an_event_sealed_with_a_missing_key_is_a_dead_letter_naming_it(
    make_tracker: Callable[..., Tracker], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, f"old:{new_key()}")
    quiet = make_tracker(core={"workers": False})
    quiet.track("purchase", user={"email": EMAIL}, value=5, currency="USD", event_id="q-1")
    quiet.close(timeout=0)
    use_keys(monkeypatch, f"new:{new_key()}")  # the old key dropped too early
    t = make_tracker()
    t.flush(timeout=10)
    wait(lambda: len(t.queue.dead_letters()) == 1, "the dead letter")
    assert "key id 'old'" in t.queue.dead_letters()[0].reason
    assert sandbox.received("example") == []
