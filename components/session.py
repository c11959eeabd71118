"""The UI side of ownership and media: who a Gradio request belongs to, whether it may queue
more work, and how a task's files reach the browser without exposing the media folder.

Policy (owners, limits) lives in ``studio.ui_access``; this module only reads ``gr.Request``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from studio.core import UI_OWNER, Studio
from studio.errors import StudioError
from studio.ui_access import COOKIE_NAME, resolve_owner

log = logging.getLogger("studio.ui")


def user_error(message: str, title: str = "Error") -> gr.Error:
    """A ``gr.Error`` for a user's mistake or a task's own failure (a refused field, an unknown
    task id, no face found): shown as a toast, logged as ONE line, no traceback (Gradio prints
    one for every ``gr.Error`` unless told not to)."""
    log.info("UI error shown to the user (%s): %s", title, message)
    return gr.Error(message, title=title, print_exception=False)


def owner_of(studio: Studio, request: gr.Request | None) -> str:
    """The owner of this UI/Gradio API call (see ``studio.ui_access``). Gradio always passes the
    request; a handler called directly from Python (no request) acts as the core's default owner."""
    if request is None:
        return UI_OWNER
    cookies = getattr(request, "cookies", None) or {}
    return resolve_owner(studio.ui_cookies, cookies.get(COOKIE_NAME), request.session_hash,
                         getattr(request, "username", None))


def client_ip(request: gr.Request | None) -> str | None:
    """The caller's address: the peer, or behind a proxy on a private address (a Space, a
    reverse proxy) the address that proxy appended last to X-Forwarded-For (entries before it
    are the client's own claims and are not trusted)."""
    if request is None or getattr(request, "client", None) is None:
        return None
    peer = request.client.host
    try:
        behind_proxy = ipaddress.ip_address(peer).is_private or ipaddress.ip_address(peer).is_loopback
    except ValueError:
        behind_proxy = False
    forwarded = (request.headers.get("x-forwarded-for") or "") if behind_proxy else ""
    return forwarded.split(",")[-1].strip() or peer


@contextmanager
def admitted(studio: Studio, request: gr.Request | None, new_tasks: int = 1) -> Iterator[str]:
    """Yield the caller's owner while its anonymous limits allow ``new_tasks`` more tasks; a
    refusal is a ``gr.Error`` with the limit's message."""
    owner = owner_of(studio, request)
    try:
        with studio.ui_limits.admit(owner, client_ip(request), new_tasks):
            yield owner
    except StudioError as error:
        raise user_error(error.detail, title=error.title) from None


def ui_file(path: str | Path | None) -> str | None:
    """A copy of a task's file that Gradio may serve, in Gradio's own cache folder under a random
    folder name (a hard link where the file system allows, so no bytes are copied).

    The media folder itself is never in Gradio's ``allowed_paths``: Gradio's file route would
    then hand any task's files (REST tenants' too) to anyone who knows a task id.
    """
    return None if path is None else ui_files([path])[0]


def ui_files(paths: list[str | Path]) -> list[str]:
    """``ui_file`` for several files with distinct names, staged together in one folder."""
    folder = Path(get_upload_folder()) / "echoel" / secrets.token_hex(16)
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    for path in paths:
        source = Path(path)
        target = folder / source.name
        try:
            os.link(source, target)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, target)
        staged.append(str(target))
    return staged
