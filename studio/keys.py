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
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Row, insert, select, update

from studio.db import Database
from studio.db.schema import api_keys

KEY_PREFIX = "ek_"
MAX_KEY_LENGTH = 256  # longer bearer tokens are refused before any hashing


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
    """The ``api_keys`` table of the studio's database, plus the keys from the environment.

    ``database``: the studio's ``Database`` (closed by its owner), or a SQLite file to open (and
    close with the store: the ``keys`` command line, tests)."""

    def __init__(self, database: Database | Path, env_keys: tuple[str, ...] = ()):
        self._owns_database = not isinstance(database, Database)
        self.database = Database.for_file(database) if self._owns_database else database
        self._env = {hash_key(k): ApiKey(id=f"env-{hash_key(k)[:12]}", name="environment", prefix=k[:6],
                                         webhook_secret=env_webhook_secret(k), created_at=0.0)
                     for k in env_keys if k}

    def close(self) -> None:
        if self._owns_database:
            self.database.dispose()

    def create(self, name: str) -> CreatedKey:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKey(id=f"key-{secrets.token_hex(6)}", name=name, prefix=key[:10],
                        webhook_secret=new_webhook_secret(), created_at=time.time())
        with self.database.connect() as db:
            db.execute(insert(api_keys).values(
                id=record.id, name=record.name, key_hash=hash_key(key), prefix=record.prefix,
                webhook_secret=record.webhook_secret, created_at=record.created_at))
        return CreatedKey(key, record)

    def lookup(self, key: str) -> ApiKey | None:
        """The key's record (revoked ones included), or None for an unknown key."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(key)
        for known_hash, record in self._env.items():
            if hmac.compare_digest(known_hash, digest):
                return record
        with self.database.connect() as db:
            row = db.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
        # The index lookup already matched; compare again in constant time so that no code path
        # branches on a partial match of attacker-controlled input.
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        return _record(row)

    def get(self, key_id: str) -> ApiKey | None:
        for record in self._env.values():
            if record.id == key_id:
                return record
        with self.database.connect() as db:
            row = db.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return _record(row) if row else None

    def list(self) -> list[ApiKey]:
        with self.database.connect() as db:
            rows = db.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self.database.connect() as db:
            return bool(db.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                   .values(revoked_at=time.time())).rowcount)


def _record(row: Row) -> ApiKey:
    return ApiKey(id=row.id, name=row.name, prefix=row.prefix, webhook_secret=row.webhook_secret,
                  created_at=row.created_at, revoked_at=row.revoked_at)
