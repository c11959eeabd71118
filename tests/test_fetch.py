"""The guarded fetcher: SSRF refusals, DNS pinning, redirects, caps and deadlines.

Nothing here needs the internet: refused URLs are checked for making no connection at all, the
pinning tests intercept ``socket.create_connection`` (what httpcore's backend connects with), and
the HTTP behaviour runs against a throwaway server on loopback (``allow_loopback=True``).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import studio.media.fetch as fetch_module
import studio.media.url_policy as url_policy_module
from studio.errors import StudioError
from studio.media.fetch import USER_AGENT, FetchResponse, fetch
from studio.media.url_policy import FetchFailed, FetchPolicy, PinnedURL, URLRefused, validate_url

pytestmark = pytest.mark.timeout(30)

LOOPBACK = FetchPolicy(allow_loopback=True, timeout_seconds=5.0)
PUBLIC_IP = "93.184.216.34"

SSRF_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]/",
    "http://100.64.0.1/",
    "http://10.0.0.5/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://localhost/",
    "http://metadata.google.internal/",
    "file:///etc/passwd",
    "gopher://x/",
    "http://user:pass@example.com/",
    "http://[fe80::1]/",
    "http://0.0.0.0/",
    # A few more spellings and transition forms of the same targets.
    "http://127.0.0.1:8080/",
    "http://LOCALHOST./",
    "http://app.localhost/",
    "http://[64:ff9b::a00:5]/",  # NAT64 of 10.0.0.5
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[fec0::1]/",
    "http://[fd00::1]/",
    "http://239.255.255.250/",
    "http://[::]/",
    "ftp://example.com/",
    "https://example.com@10.0.0.5/",
    "http://1.2.3.256/",
    "http://example.com:0/",
    "example.com/path",
]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def connections(monkeypatch):
    """Every TCP connection attempt httpcore makes, as (host, port); real ones still go through."""
    attempts: list[tuple[str, int]] = []
    real = socket.create_connection

    def recording(address, *args, **kwargs):
        attempts.append(tuple(address[:2]))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording)
    return attempts


@pytest.fixture
def lookups(monkeypatch):
    """DNS queries made through ``_resolve``; names answer from ``lookups.answers`` (else fail)."""

    class Lookups(list):
        answers: dict[str, list[str]] = {}

    calls = Lookups()

    def resolve(host, port):
        calls.append(host)
        if host not in calls.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(calls.answers[host])

    monkeypatch.setattr(url_policy_module, "_resolve", resolve)
    calls.answers = {}
    return calls


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher hung up on purpose (caps, deadlines)

    def do_GET(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Host")))
        body_length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(body_length) if body_length else b""
        route = getattr(self, "route_" + self.path.strip("/").split("?")[0].replace("-", "_"), None)
        if route is None:
            self.reply(404, b"no such route")
        else:
            route()

    do_POST = do_PUT = do_HEAD = do_GET

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route_ok(self):
        self.reply(200, b"hello fetch", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1")])

    def route_echo(self):
        echoed = {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                  "body": self.body.decode("latin-1")}
        self.reply(200, json.dumps(echoed).encode(), [("Content-Type", "application/json")])

    def route_big_cl(self):
        self.reply(200, b"x" * 5000)

    def route_big_chunked(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(20):
            self.wfile.write(b"12c\r\n" + b"y" * 300 + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def route_slow_body(self):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.trickle(b"z" * 100)

    def route_slow_headers(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.trickle(b"X-Slow: " + b"s" * 100)

    def trickle(self, data):
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.5)

    def route_redirect_local(self):
        self.reply(302, b"moved", [("Location", "/ok")])

    def route_redirect_refused(self):
        self.reply(302, b"", [("Location", "http://10.0.0.5/")])

    def route_redirect_internal_name(self):
        self.reply(302, b"", [("Location", "http://intranet.test/")])

    def route_redirect_cross(self):
        port = self.server.server_address[1]
        self.reply(307, b"", [("Location", f"http://other.example:{port}/echo")])

    def route_redirect_loop(self):
        self.reply(302, b"", [("Location", "/redirect-loop")])

    def route_redirect_307(self):
        self.reply(307, b"", [("Location", "/echo")])

    def route_redirect_303(self):
        self.reply(303, b"", [("Location", "/echo")])


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def served(server):
    server.seen.clear()
    return server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- SSRF: refused before any connection ---------------------------------------------------------


@pytest.mark.parametrize("url", SSRF_URLS)
def test_ssrf_targets_are_refused_without_connecting(url, connections, lookups):
    with pytest.raises(URLRefused) as refused:
        fetch(url)
    assert connections == []
    assert lookups == []  # literals and reserved names never even reach DNS
    assert refused.value.status_code == 400 and refused.value.type == "InvalidURL"
    assert refused.value.title == "Invalid URL"
    with pytest.raises(URLRefused):
        validate_url(url)


@pytest.mark.parametrize("url, reason", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://10.0.0.5/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://localhost/", "local or internal name"),
    ("http://metadata.google.internal/", "local or internal name"),
    ("file:///etc/passwd", "Only http and https"),
    ("http://user:pass@example.com/", "credentials"),
])
def test_refusals_name_their_reason(url, reason):
    with pytest.raises(URLRefused, match=reason):
        validate_url(url)


def test_names_resolving_to_internal_addresses_are_refused_without_leaking_them(lookups, connections):
    lookups.answers = {"metadata.example": ["169.254.169.254"],
                       "mixed.example": [PUBLIC_IP, "10.1.2.3"]}
    for url in ("http://metadata.example/", "https://mixed.example/"):
        with pytest.raises(URLRefused) as refused:
            fetch(url)
        assert "169.254" not in refused.value.detail and "10.1.2.3" not in refused.value.detail
        assert "resolves to" in refused.value.detail
    assert connections == []


def test_unresolvable_host_is_refused_with_a_sensible_reason(lookups, connections):
    with pytest.raises(URLRefused, match="could not be resolved"):
        fetch("http://no-such-host.example/")
    assert connections == []


def test_slow_dns_counts_against_the_connect_timeout(monkeypatch):
    monkeypatch.setattr(url_policy_module, "_resolve", lambda host, port: time.sleep(3) or [PUBLIC_IP])
    started = time.monotonic()
    with pytest.raises(FetchFailed) as failed:
        validate_url("http://slow-dns.example/", FetchPolicy(connect_timeout=0.2))
    assert failed.value.retryable
    assert time.monotonic() - started < 1.0


def test_allow_loopback_permits_only_loopback(lookups):
    assert validate_url("http://127.0.0.1:8000/x", LOOPBACK).ip == "127.0.0.1"
    assert validate_url("http://127.1/", LOOPBACK).ip == "127.0.0.1"
    assert validate_url("http://[::1]:8000/", LOOPBACK).ip == "::1"
    for url in ("http://10.0.0.5/", "http://169.254.169.254/", "http://0.0.0.0/",
                "http://[::ffff:127.0.0.1]/", "http://192.168.1.1/", "http://localhost/"):
        with pytest.raises(URLRefused):
            validate_url(url, LOOPBACK)


def test_validate_url_pins_and_normalizes(lookups):
    lookups.answers = {"media.example": [PUBLIC_IP, "2606:2800:220:1::"]}
    pinned = validate_url("HTTPS://Media.Example./a b?q=ü#fragment")
    assert pinned == PinnedURL(url="https://media.example/a%20b?q=%C3%BC", scheme="https",
                               host="media.example", port=443, ip=PUBLIC_IP)
    assert validate_url("http://0x5db8d822:8080/").url == f"http://{PUBLIC_IP}:8080/"
    assert lookups == ["media.example"]  # exactly one lookup


def test_errors_fit_the_studio_error_shape():
    failed = FetchFailed("boom", retryable=True)
    assert isinstance(failed, StudioError) and failed.retryable
    assert failed.body() == {"error": "Fetch failed", "detail": "boom", "type": "FetchFailed"}
    assert FetchFailed("no").retryable is False


# --- pinning: DNS rebinding can't redirect the connection ----------------------------------------


def test_dns_rebinding_connects_only_to_the_vetted_address(monkeypatch, served, lookups):
    answers = iter([[PUBLIC_IP]])
    monkeypatch.setattr(url_policy_module, "_resolve",
                        lambda host, port: lookups.append(host) or next(answers, ["127.0.0.1"]))
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(tuple(address[:2]))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    # Even with loopback allowed, the second (rebound) answer is never asked for nor used.
    port = served.server_address[1]
    with pytest.raises(FetchFailed) as failed:
        fetch(f"http://rebind.example:{port}/ok", LOOPBACK)
    assert failed.value.retryable
    assert attempts == [(PUBLIC_IP, port)]
    assert lookups == ["rebind.example"]
    assert served.seen == []


def test_https_connects_to_the_pin_but_verifies_the_real_hostname(monkeypatch, lookups):
    lookups.answers = {"secure.example": [PUBLIC_IP]}
    attempts, handshakes = [], []
    real_connect = socket.create_connection
    listener = socket.create_server(("127.0.0.1", 0))  # stands in for the remote end

    def connect(address, *args, **kwargs):
        attempts.append(tuple(address[:2]))
        return real_connect(listener.getsockname(), *args, **kwargs)

    class RecordingContext:
        def set_alpn_protocols(self, protocols):
            pass

        def wrap_socket(self, sock, server_hostname=None, **kwargs):
            handshakes.append(server_hostname)
            raise ssl.SSLCertVerificationError("certificate verify failed (test)")

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(fetch_module, "_ssl_context", lambda: RecordingContext())
    with listener, pytest.raises(FetchFailed) as failed:
        fetch("https://secure.example/file.wav")
    assert "certificate verify failed" in failed.value.detail
    assert attempts == [(PUBLIC_IP, 443)]
    assert handshakes == ["secure.example"]


# --- real exchanges against a loopback server ----------------------------------------------------


def test_get_returns_status_headers_and_body(served, connections):
    response = fetch(f"{served.url}/ok", LOOPBACK)
    assert isinstance(response, FetchResponse)
    assert (response.status_code, response.content) == (200, b"hello fetch")
    assert response.headers["content-type"] == "text/plain"
    assert response.url == f"{served.url}/ok" and response.ip == "127.0.0.1"
    assert connections == [("127.0.0.1", served.server_address[1])]


def test_host_header_is_the_original_host_while_connecting_to_the_pin(served, lookups, connections):
    lookups.answers = {"studio.example": ["127.0.0.1"]}
    port = served.server_address[1]
    response = fetch(f"http://studio.example:{port}/echo", LOOPBACK)
    echoed = json.loads(response.content)
    assert echoed["headers"]["Host"] == f"studio.example:{port}"
    assert echoed["headers"]["User-Agent"] == USER_AGENT
    assert response.url == f"http://studio.example:{port}/echo" and response.ip == "127.0.0.1"
    assert connections == [("127.0.0.1", port)]


def test_post_with_content_and_headers_arrives_intact(served):
    payload = json.dumps({"event": "task.completed", "task_id": "abc"}).encode()
    response = fetch(f"{served.url}/echo", LOOPBACK, method="POST", content=payload,
                     headers={"Content-Type": "application/json", "X-Echoel-Signature": "sha256=ff",
                              "Host": "attacker.example", "Content-Length": "1"})
    echoed = json.loads(response.content)
    assert echoed["method"] == "POST"
    assert echoed["body"].encode("latin-1") == payload
    assert echoed["headers"]["Content-Type"] == "application/json"
    assert echoed["headers"]["X-Echoel-Signature"] == "sha256=ff"
    assert echoed["headers"]["Content-Length"] == str(len(payload))  # ours, not the caller's
    assert echoed["headers"]["Host"] == served.url.removeprefix("http://")


def test_no_cookies_are_kept_between_requests(served):
    fetch(f"{served.url}/ok", LOOPBACK)  # answers with Set-Cookie
    echoed = json.loads(fetch(f"{served.url}/echo", LOOPBACK).content)
    assert "Cookie" not in echoed["headers"]


def test_body_over_max_bytes_with_content_length_fails(served):
    with pytest.raises(FetchFailed, match="larger than 1000 bytes") as failed:
        fetch(f"{served.url}/big-cl", FetchPolicy(allow_loopback=True, max_bytes=1000))
    assert failed.value.retryable is False


def test_chunked_body_over_max_bytes_fails(served):
    with pytest.raises(FetchFailed, match="larger than 1000 bytes") as failed:
        fetch(f"{served.url}/big-chunked", FetchPolicy(allow_loopback=True, max_bytes=1000))
    assert failed.value.retryable is False


def test_body_exactly_at_the_cap_is_fine(served):
    assert fetch(f"{served.url}/ok", FetchPolicy(allow_loopback=True, max_bytes=11)).content == b"hello fetch"


@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_trickling_server_is_cut_off_at_the_total_deadline(served, path):
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="Timed out") as failed:
        fetch(f"{served.url}{path}", FetchPolicy(allow_loopback=True, timeout_seconds=2.0))
    elapsed = time.monotonic() - started
    assert failed.value.retryable
    assert 1.9 <= elapsed < 3.0


def test_connection_refused_is_retryable():
    with pytest.raises(FetchFailed, match="failed") as failed:
        fetch(f"http://127.0.0.1:{closed_port()}/", LOOPBACK)
    assert failed.value.retryable is True


# --- redirects -----------------------------------------------------------------------------------


def test_relative_redirect_is_followed(served):
    response = fetch(f"{served.url}/redirect-local", LOOPBACK)
    assert (response.status_code, response.content) == (200, b"hello fetch")
    assert response.url == f"{served.url}/ok"
    assert [path for _, path, _ in served.seen] == ["/redirect-local", "/ok"]


def test_redirect_is_returned_as_is_when_not_following(served):
    response = fetch(f"{served.url}/redirect-local", LOOPBACK, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/ok" and response.content == b"moved"
    assert [path for _, path, _ in served.seen] == ["/redirect-local"]


def test_redirect_to_a_refused_address_fails_without_contacting_it(served, connections):
    with pytest.raises(FetchFailed, match="private address") as failed:
        fetch(f"{served.url}/redirect-refused", LOOPBACK)
    assert failed.value.retryable is False
    assert connections == [("127.0.0.1", served.server_address[1])]


def test_redirect_to_a_name_resolving_internally_fails(served, lookups, connections):
    lookups.answers = {"intranet.test": ["10.20.30.40"]}
    with pytest.raises(FetchFailed, match="resolves to a private address") as failed:
        fetch(f"{served.url}/redirect-internal-name", LOOPBACK)
    assert "10.20.30.40" not in failed.value.detail
    assert failed.value.retryable is False
    assert connections == [("127.0.0.1", served.server_address[1])]


def test_redirect_loops_stop_at_max_redirects(served):
    with pytest.raises(FetchFailed, match="Too many redirects") as failed:
        fetch(f"{served.url}/redirect-loop", FetchPolicy(allow_loopback=True, max_redirects=2))
    assert failed.value.retryable is False
    assert len(served.seen) == 3  # the original request plus two redirects


def test_307_repeats_the_post_and_303_turns_it_into_a_get(served):
    kept = json.loads(fetch(f"{served.url}/redirect-307", LOOPBACK, method="POST", content=b"payload",
                            headers={"Content-Type": "text/plain"}).content)
    assert (kept["method"], kept["body"]) == ("POST", "payload")
    changed = json.loads(fetch(f"{served.url}/redirect-303", LOOPBACK, method="POST", content=b"payload",
                               headers={"Content-Type": "text/plain"}).content)
    assert (changed["method"], changed["body"]) == ("GET", "")
    assert "Content-Type" not in changed["headers"]


def test_credentials_do_not_follow_a_redirect_to_another_origin(served, lookups, connections):
    lookups.answers = {"other.example": ["127.0.0.1"]}
    response = fetch(f"{served.url}/redirect-cross", LOOPBACK, method="POST", content=b"signed",
                     headers={"Authorization": "Bearer secret", "X-Echoel-Signature": "sha256=ff"})
    echoed = json.loads(response.content)
    assert echoed["headers"]["Host"] == f"other.example:{served.server_address[1]}"
    assert "Authorization" not in echoed["headers"]
    assert (echoed["body"], echoed["headers"]["X-Echoel-Signature"]) == ("signed", "sha256=ff")
    assert lookups == ["other.example"]  # the redirect target was resolved (and vetted) once
    assert len(connections) == 2
