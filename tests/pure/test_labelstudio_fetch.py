"""Task image downloads within limits, against a real misbehaving HTTP server on 127.0.0.1
(tests/support/hostile_http.py) and the GCS emulator. The same downloads through the Label Studio
client and the importer, with a real server: tests/servers/test_labelstudio.py."""

from __future__ import annotations

import pytest

from planets_mlops.errors import InvalidParameterError, LabelStudioError
from planets_mlops.knobs import ImageFetchParams
from planets_mlops.labelstudio.fetch import (
    ALLOW_HOSTS_ENV,
    ImageFetchError,
    fetch_gcs,
    fetch_http,
    limits_from_env,
)
from tests.support.hostile_http import DRIP_BYTES, HUGE, IMAGE, hostile_server


class Fetcher:
    """fetch_http / fetch_gcs with a set of limits, shaped like the client's fetch_image."""

    def __init__(self, trusted: str = "", **limits) -> None:
        self.limits = ImageFetchParams(**limits)
        self.trusted = trusted

    def fetch_image(self, url: str) -> bytes:
        if url.startswith("gs://"):
            return fetch_gcs(url, self.limits)
        if url.startswith("/"):
            url = self.trusted + url
        origin = ("http", self.trusted[len("http://") :]) if self.trusted else None
        return fetch_http(
            url, self.limits, trusted_origin=origin, trusted_headers=lambda: {"Authorization": "Token t"}
        )


def client(trusted: str = "", **limits) -> Fetcher:
    return Fetcher(trusted, **limits)


@pytest.fixture
def hostile():
    with hostile_server() as server:
        yield server


def allow(server) -> tuple[str, ...]:
    return (server.host_port,)


def test_an_allowed_host_is_fetched_byte_for_byte(hostile):
    assert client(allow_hosts=allow(hostile)).fetch_image(f"{hostile.url}/image") == IMAGE


def test_loopback_is_refused_by_default(hostile):
    with pytest.raises(ImageFetchError, match=rf"Refusing .*127\.0\.0\.1.*{ALLOW_HOSTS_ENV}"):
        client().fetch_image(f"{hostile.url}/image")
    assert hostile.requests == []  # refused before connecting


@pytest.mark.parametrize("route", ["/huge", "/huge-chunked"])
def test_a_huge_body_is_refused_without_reading_it(hostile, route):
    with pytest.raises(ImageFetchError, match=r"over the limit of 1048576 bytes \(PLANETS_FETCH_MAX_BYTES\)"):
        client(allow_hosts=allow(hostile), max_bytes=1024 * 1024).fetch_image(f"{hostile.url}{route}")
    # The server stops being read at the cap: it cannot push its 400 MiB (socket buffers
    # let a few MiB through at most).
    assert hostile.sent.get(route, 0) < HUGE // 10


@pytest.mark.parametrize("route", ["/drip", "/drip-headers"])
def test_a_drip_fed_answer_stops_at_the_overall_deadline(hostile, route):
    with pytest.raises(ImageFetchError, match=r"took longer than 0.5 s \(PLANETS_FETCH_DEADLINE_S\)"):
        client(allow_hosts=allow(hostile), deadline_s=0.5).fetch_image(f"{hostile.url}{route}")
    # Each read was quick (one byte), so a per-read timeout would have waited for all of them.
    assert hostile.sent.get(route, 0) < DRIP_BYTES // 2


def test_a_redirect_to_another_loopback_port_is_refused(hostile):
    with hostile_server() as internal:
        url = f"{hostile.url}/redirect?to={internal.url}/image"
        with pytest.raises(ImageFetchError, match=r"Refusing .*resolves to 127\.0\.0\.1"):
            client(allow_hosts=allow(hostile)).fetch_image(url)
        assert internal.requests == []
        assert client(allow_hosts=allow(hostile) + allow(internal)).fetch_image(url) == IMAGE


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/computeMetadata/v1/",  # cloud metadata (link-local)
        "http://10.0.0.1/x",
        "http://[::1]:80/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "file:///etc/passwd",
    ],
)
def test_redirects_to_internal_addresses_and_other_schemes_are_refused(hostile, target):
    with pytest.raises(ImageFetchError, match="Refusing"):
        client(allow_hosts=allow(hostile)).fetch_image(f"{hostile.url}/redirect?to={target}")


def test_a_redirect_loop_ends(hostile):
    with pytest.raises(ImageFetchError, match=r"more than 3 redirects"):
        client(allow_hosts=allow(hostile)).fetch_image(f"{hostile.url}/loop")
    assert len(hostile.requests) == 4


def test_the_token_goes_to_the_label_studio_server_only(hostile):
    with hostile_server() as other:
        ls = client(hostile.url, allow_hosts=allow(other))
        assert ls.fetch_image(f"/redirect?to={other.url}/image") == IMAGE
    assert hostile.requests[0][1].get("Authorization") == "Token t"
    assert "Authorization" not in other.requests[0][1]


def test_the_label_studio_server_is_trusted_and_its_errors_kept(hostile):
    ls = client(hostile.url)  # loopback, but the configured server
    assert ls.fetch_image("/image") == IMAGE
    with pytest.raises(ImageFetchError, match="HTTP 404"):
        ls.fetch_image("/data/upload/1/gone.png")
    with pytest.raises(LabelStudioError, match="Cannot reach Label Studio"):
        client("http://127.0.0.1:9").fetch_image("/data/upload/1/x.png")


def test_limits_from_the_environment():
    limits = limits_from_env(
        {
            "PLANETS_FETCH_MAX_BYTES": "2048",
            "PLANETS_FETCH_DEADLINE_S": "2.5",
            ALLOW_HOSTS_ENV: "label-studio.internal, 10.0.0.0/8, 127.0.0.1:8080, [::1]:9",
        }
    )
    assert (limits.max_bytes, limits.deadline_s) == (2048, 2.5)
    assert limits.allow_hosts == ("label-studio.internal", "10.0.0.0/8", "127.0.0.1:8080", "[::1]:9")
    assert limits_from_env({}) == ImageFetchParams()
    assert ImageFetchParams().allow_hosts == ()  # safe default: nothing internal


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLANETS_FETCH_MAX_BYTES", "0"),
        ("PLANETS_FETCH_MAX_BYTES", "ten"),
        ("PLANETS_FETCH_DEADLINE_S", "inf"),
        ("PLANETS_FETCH_DEADLINE_S", "-1"),
        ("PLANETS_FETCH_MAX_REDIRECTS", "-1"),
        (ALLOW_HOSTS_ENV, "10.0.0.0/8:99999"),
        (ALLOW_HOSTS_ENV, "host name"),
    ],
)
def test_a_bad_limit_names_its_variable(name, value):
    with pytest.raises(InvalidParameterError, match=rf"Invalid {name}="):
        limits_from_env({name: value})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("gs://planets-labels/task-1.png", "credentials"),  # a pod without GCS credentials
        ("http://[::1/x.png", "Invalid IPv6 URL"),
        ("http://\udcff.example/x.png", "idna"),
        ("http://" + "a" * 300 + ".example/x.png", "idna"),
    ],
    ids=["gs-without-credentials", "broken-ipv6", "bad-idna", "label-too-long"],
)
def test_every_fetch_failure_is_a_skipped_task_with_its_reason(monkeypatch, url, reason):
    """Issue 26, defect 5: one task's gs:// URL in a pod without GCS credentials aborted the
    whole import (the storage client's error escaped the fetcher). Through the client the
    importer uses (no server is contacted before the download)."""
    from planets_mlops.labelstudio.client import LabelStudioClient

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no gcloud application-default file either
    ls = LabelStudioClient("http://127.0.0.1:9", "token", fetch_limits=ImageFetchParams(deadline_s=5))
    with pytest.raises(ImageFetchError, match=reason):
        ls.fetch_image(url)


def test_the_api_token_never_follows_a_redirect_to_another_server():
    """Issue 26, weak point: the SDK follows redirects, so a 307 from the configured server
    resent a personal access token's refresh request (the token in its body) to another
    host. Real servers on 127.0.0.1: the configured one answers every request with a 307
    to another port (another origin), which records what reaches it."""
    import http.server
    import json
    import threading
    import time

    import jwt

    reached: list[tuple[str, bytes]] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            reached.append((self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            body = json.dumps({"access": "x", "results": [], "next": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for each in (other, server):
        threading.Thread(target=each.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    from planets_mlops.labelstudio.client import LabelStudioClient

    try:
        refresh = jwt.encode({"exp": int(time.time()) + 3600, "token_type": "refresh"}, "k" * 32)
        for token in (refresh, "legacy-token-0123"):
            ls = LabelStudioClient(f"http://127.0.0.1:{server.server_port}", token, timeout=5)
            with pytest.raises(LabelStudioError, match="redirected a request to .*another server"):
                ls._request("GET", "/api/projects/", "listing projects")
            with pytest.raises(LabelStudioError, match="redirected"):
                ls.find_project("planets")
    finally:
        for each in (other, server):
            each.shutdown()
            each.server_close()
    assert reached == []
