"""API keys: created at random, shown once, stored only as SHA-256 hashes.

Each key also has a webhook signing secret (shown with the key) that signs the webhooks of the
tasks it creates. Keys listed in ``ECHOEL_API_KEYS`` (development and tests) are accepted too;
their webhook secret is derived from the key (``env_webhook_secret``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "ek_"
MAX_KEY_LENGTH = 256  # longer bearer tokens are refused before any hashing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    key_hash       TEXT NOT NULL UNIQUE,
    prefix         TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    created_at     REAL NOT NULL,
    revoked_at     REAL
);
"""


@dataclass(frozen=True)
class ApiKey:
    """A key as the server knows it (never the key itself)."""

    id: str
    name: str
    prefix: str
    webhook_secret: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class CreatedKey:
    """What ``create`` returns: the only time the plain key is available."""

    key: str
    record: ApiKey


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def env_webhook_secret(key: str) -> str:
    """The webhook secret of a key given through ``ECHOEL_API_KEYS`` (derived, so both sides
    can compute it without storing anything)."""
    digest = hmac.new(key.encode(), b"echoelmusic webhook secret", hashlib.sha256).digest()[:24]
    return "whsec_" + base64.b64encode(digest).decode()


class KeyStore:
    """The ``api_keys`` table of the studio's SQLite file, plus the keys from the environment."""

    def __init__(self, path: Path, env_keys: tuple[str, ...] = ()):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._env = {hash_key(k): ApiKey(id=f"env-{hash_key(k)[:12]}", name="environment", prefix=k[:6],
                                         webhook_secret=env_webhook_secret(k), created_at=0.0)
                     for k in env_keys if k}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, name: str) -> CreatedKey:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(id=f"key-{secrets.token_hex(6)}", name=name, prefix=key[:10],
                        webhook_secret=new_webhook_secret(), created_at=time.time())
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, name, key_hash, prefix, webhook_secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, record.name, hash_key(key), record.prefix, record.webhook_secret, record.created_at))
        return CreatedKey(key, record)

    def lookup(self, key: str) -> ApiKey | None:
        """The key's record (revoked ones included), or None for an unknown key."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(key)
        for known_hash, record in self._env.items():
            if hmac.compare_digest(known_hash, digest):
                return record
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE key_hash = ?", (digest,)).fetchone()
        # The index lookup already matched; compare again in constant time so that no code path
        # branches on a partial match of attacker-controlled input.
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None
        return _record(row)

    def get(self, key_id: str) -> ApiKey | None:
        for record in self._env.values():
            if record.id == key_id:
                return record
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return _record(row) if row else None

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM api_keys ORDER BY created_at").fetchall()
        return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            return bool(self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id)).rowcount)


def _record(row: sqlite3.Row) -> ApiKey:
    return ApiKey(id=row["id"], name=row["name"], prefix=row["prefix"], webhook_secret=row["webhook_secret"],
                  created_at=row["created_at"], revoked_at=row["revoked_at"])
