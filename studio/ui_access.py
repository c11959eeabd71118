"""Who owns the UI's tasks, and how much anonymous work one UI client may queue.

Owners. Over REST a task belongs to an API key. In the web UI (and so the Gradio API) every
visitor is its own owner, never a shared one:

- a browser gets a persistent anonymous id in a signed cookie (``echoel_owner``, HMAC-SHA256
  with a secret kept in the data folder, HttpOnly, one year): it survives reloads and restarts,
  and nobody can forge another visitor's id;
- ``gradio_client`` keeps the cookie its first request received, so each ``Client`` is its own
  owner too; a caller that keeps no cookies is owned by its Gradio session (``session_hash``);
- on a Space with Hugging Face login, the logged-in user.

Every UI owner starts with ``ui:`` (API key ids never contain a colon), which is how the queue
tells anonymous UI work from keyed work (``TaskStore.claim_next`` alternates between the two).

Limits (``AnonymousLimits``): a UI owner may have at most ``max_active`` unfinished tasks (one
running plus ``max_active - 1`` queued; a batch or scene edit counts each of its tasks), and all
UI owners seen from one client IP together at most ``max_active_per_ip`` (so opening new
sessions does not lift the limit). Beyond that a submit is refused with 429
``RateLimitExceeded`` saying how many tasks are unfinished; it can be retried once one ends.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studio.db.state import StudioState
from studio.errors import RateLimited

UI_PREFIX = "ui:"
COOKIE_NAME = "echoel_owner"
COOKIE_MAX_AGE = 365 * 24 * 3600
MAX_ACTIVE = 5           # per UI owner: one running + four queued (a 4-scene edit is 5 tasks)
MAX_ACTIVE_PER_IP = 10   # all UI owners of one client address together (households, offices share an IP)


def is_ui_owner(owner: str) -> bool:
    """Whether ``owner`` is a UI visitor (anonymous or HF login) rather than an API key."""
    return owner == "ui" or owner.startswith(UI_PREFIX)


SECRET_NAME = "ui_owner_secret"  # its row in studio_state (hex)


class OwnerCookies:
    """Issue and verify the signed anonymous-owner cookie."""

    def __init__(self, secret: bytes):
        self._secret = secret

    @classmethod
    def load(cls, data_dir: Path, state: StudioState | None = None) -> "OwnerCookies":
        """The cookie signer with the studio's secret, created on first use so cookies stay
        valid across restarts. With ``state`` (the database) every API process signs with the
        same secret, wherever it runs; a secret an earlier version kept in the data folder
        (``ui_owner.key``) is adopted, so its visitors keep their tasks."""
        path = Path(data_dir) / "ui_owner.key"
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            secret = None
        if state is not None:
            stored = state.get_or_create(SECRET_NAME, lambda: (secret or secrets.token_bytes(32)).hex())
            return cls(bytes.fromhex(stored))
        if secret is None:
            secret = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
        return cls(secret)

    def _sign(self, anon_id: str) -> str:
        return hmac.new(self._secret, anon_id.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        """A new cookie value: a random id and its signature."""
        anon_id = secrets.token_hex(16)
        return f"{anon_id}.{self._sign(anon_id)}"

    def owner(self, cookie: str | None) -> str | None:
        """The owner a valid cookie stands for, or None (absent, malformed or forged)."""
        if not cookie or cookie.count(".") != 1:
            return None
        anon_id, signature = cookie.split(".")
        if len(anon_id) != 32 or not hmac.compare_digest(signature, self._sign(anon_id)):
            return None
        return f"{UI_PREFIX}{anon_id}"


def resolve_owner(cookies: OwnerCookies, cookie: str | None, session_hash: str | None,
                  username: str | None) -> str:
    """The owner of a UI request: the HF login, else the signed cookie, else the Gradio session."""
    if username:
        return f"{UI_PREFIX}user:{username}"
    owner = cookies.owner(cookie)
    if owner is not None:
        return owner
    if session_hash:
        # Hashed so the owner column never holds a live session id.
        return f"{UI_PREFIX}session:{hashlib.sha256(session_hash.encode()).hexdigest()[:32]}"
    # No cookie and no session: a one-off owner, so the task is nobody else's.
    return f"{UI_PREFIX}anon:{secrets.token_hex(16)}"


class OwnerCookieMiddleware:
    """Pure ASGI middleware: a GET outside the REST API without a valid owner cookie gets one.

    Pure ASGI (not ``BaseHTTPMiddleware``) so Gradio's server-sent events stream untouched.
    """

    SKIP_PREFIXES = ("/v1", "/docs", "/redoc", "/openapi.json", "/metrics")

    def __init__(self, app, cookies: OwnerCookies):
        self.app = app
        self.cookies = cookies

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"].startswith(self.SKIP_PREFIXES):
            return await self.app(scope, receive, send)
        if self.cookies.owner(_request_cookie(scope, COOKIE_NAME)) is not None:
            return await self.app(scope, receive, send)
        https = scope.get("scheme") == "https" or _header(scope, b"x-forwarded-proto") == "https"
        # Inside a Space the app is a cross-site iframe: only SameSite=None; Secure (partitioned)
        # cookies reach it there. Plain http (local use) cannot set Secure cookies.
        attrs = "; SameSite=None; Secure; Partitioned" if https else "; SameSite=Lax"
        value = f"{COOKIE_NAME}={self.cookies.issue()}; Path=/; Max-Age={COOKIE_MAX_AGE}; HttpOnly{attrs}"

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _request_cookie(scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class AnonymousLimits:
    """Admission of UI work: per owner and per client IP caps on unfinished tasks.

    ``active_count(owners)`` counts the unfinished (pending or running) tasks of those owners in
    the durable store, so the limit holds whatever way a task ends; admission is serialised by a
    lock, so two quick submits of one owner cannot both squeeze into the last slot.
    """

    MAX_OWNERS_PER_IP = 64
    MAX_IPS = 10_000

    def __init__(self, active_count, max_active: int = MAX_ACTIVE, max_active_per_ip: int = MAX_ACTIVE_PER_IP):
        self.active_count = active_count
        self.max_active = max_active
        self.max_active_per_ip = max_active_per_ip
        self._lock = threading.Lock()
        self._owners_by_ip: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()

    def _owners_of(self, ip: str, owner: str) -> list[str]:
        owners = self._owners_by_ip.setdefault(ip, OrderedDict())
        self._owners_by_ip.move_to_end(ip)
        owners[owner] = None
        owners.move_to_end(owner)
        while len(owners) > self.MAX_OWNERS_PER_IP:
            owners.popitem(last=False)
        while len(self._owners_by_ip) > self.MAX_IPS:
            self._owners_by_ip.popitem(last=False)
        return list(owners)

    @contextmanager
    def admit(self, owner: str, ip: str | None, new_tasks: int = 1) -> Iterator[None]:
        """Let the body submit ``new_tasks`` tasks for ``owner`` if both caps allow, else raise
        ``RateLimited`` (429, the seed's ``RateLimitExceeded``) with a clear message."""
        with self._lock:
            mine = self.active_count([owner])
            if mine + new_tasks > self.max_active:
                raise RateLimited(
                    f"anonymous UI limit: at most {self.max_active} unfinished tasks per visitor (1 running + "
                    f"{self.max_active - 1} queued); you have {mine} and this adds {new_tasks}. "
                    "Wait for one to finish or stop it, or use the REST API with an API key")
            if ip:
                shared = self.active_count(self._owners_of(ip, owner))
                if shared + new_tasks > self.max_active_per_ip:
                    raise RateLimited(
                        f"anonymous UI limit: at most {self.max_active_per_ip} unfinished tasks from one network "
                        f"address; {shared} are queued or running. Try again when some have finished")
            yield
