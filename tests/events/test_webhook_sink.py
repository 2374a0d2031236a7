"""The webhook sink against a real HTTP receiver on 127.0.0.1.

The receiver answers with whatever status the test sets and records each request, so the
tests check the bytes on the wire: body, content type and a signature verified here with
:mod:`hmac`, independently of the sink's own code.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlflow_governance.events.envelope import envelope
from mlflow_governance.events.sinks import DeliveryError, sinks_for
from mlflow_governance.events.sinks._http import forbidden_reason
from mlflow_governance.events.sinks.webhook import WebhookSink
from mlflow_governance.policy import Notification, load_policy_text

EVENT: dict[str, Any] = {
    "id": 7,
    "event_id": "3f2a9c0d4e5b6a718293a4b5c6d7e8f9",
    "type": "promotion.requested",
    "model": "fraud-detector",
    "version": 7,
    "time": "2025-01-02T03:04:05Z",
    "data": {
        "actor": "alice",
        "model": "fraud-detector",
        "version": 7,
        "from": None,
        "to": "Production",
        "request_id": 12,
    },
}
BODY = envelope(EVENT, source="https://registry.example")


@dataclass
class Receiver:
    """A local HTTP server that records requests and answers ``status``."""

    url: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state.requests.append((self.path, dict(self.headers.items()), body))
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on what was received."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def local_sink(url: str, **fields: Any) -> WebhookSink:
    return WebhookSink(Notification(type="webhook", url=url, allow_insecure=True, **fields))


def verify(header: str, body: bytes, secret: str) -> int:
    """Check a signature header as a receiver would; return its timestamp."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    return int(parts["t"])


class TestDelivery:
    def test_posts_the_cloudevent_signed(
        self, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GOV_TEST_HOOK_SECRET", "s3cret")
        sink = local_sink(f"{receiver.url}/hook", secret_env="GOV_TEST_HOOK_SECRET")
        sink.deliver(BODY, EVENT)
        ((path, headers, body),) = receiver.requests
        assert path == "/hook"
        assert body == BODY
        assert headers["Content-Type"] == "application/cloudevents+json"
        assert headers["Host"] == receiver.url.removeprefix("http://")
        stamp = verify(headers["X-Governance-Signature"], body, "s3cret")
        assert abs(stamp - time.time()) < 60
        cloud_event = json.loads(body)
        assert (cloud_event["specversion"], cloud_event["id"]) == ("1.0", EVENT["event_id"])
        assert cloud_event["data"]["request_id"] == 12

    def test_a_wrong_secret_does_not_verify(
        self, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("GOV_TEST_HOOK_SECRET", "s3cret")
        local_sink(receiver.url, secret_env="GOV_TEST_HOOK_SECRET").deliver(BODY, EVENT)
        ((_, headers, body),) = receiver.requests
        with pytest.raises(AssertionError):
            verify(headers["X-Governance-Signature"], body, "other")

    def test_no_secret_configured_means_no_signature(self, receiver: Receiver) -> None:
        local_sink(receiver.url).deliver(BODY, EVENT)
        ((_, headers, _),) = receiver.requests
        assert "X-Governance-Signature" not in headers

    def test_a_secret_variable_missing_from_the_environment(
        self, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("GOV_TEST_ABSENT_SECRET", raising=False)
        sink = local_sink(receiver.url, secret_env="GOV_TEST_ABSENT_SECRET")
        with pytest.raises(DeliveryError, match="GOV_TEST_ABSENT_SECRET") as caught:
            sink.deliver(BODY, EVENT)
        assert not caught.value.permanent
        assert receiver.requests == []

    def test_a_localhost_name_reaches_the_receiver(self, receiver: Receiver) -> None:
        # "localhost" may resolve to ::1 first; the sink tries the next checked address.
        local_sink(receiver.url.replace("127.0.0.1", "localhost")).deliver(BODY, EVENT)
        assert len(receiver.requests) == 1

    def test_built_from_a_loaded_policy(self, receiver: Receiver) -> None:
        policy = load_policy_text(
            "version: 1\nnotifications:\n"
            f"  - {{type: webhook, url: '{receiver.url}/x', allow_insecure: true,"
            " events: ['promotion.*'], models: ['fraud-*']}\n"
        )
        (sink,) = sinks_for(policy.notifications)
        assert sink.key == f"webhook:{receiver.url}/x"
        assert sink.wants("promotion.requested", "fraud-detector")
        assert sink.wants("promotion.requested", None)
        assert not sink.wants("promotion.requested", "churn")
        assert not sink.wants("alias.set", "fraud-detector")
        sink.deliver(BODY, EVENT)
        assert receiver.requests[0][2] == BODY


class TestClassification:
    @pytest.mark.parametrize("status", [429, 500, 502, 503])
    def test_busy_or_failing_receivers_are_transient(self, receiver: Receiver, status: int) -> None:
        receiver.status = status
        with pytest.raises(DeliveryError, match=str(status)) as caught:
            local_sink(receiver.url).deliver(BODY, EVENT)
        assert not caught.value.permanent

    @pytest.mark.parametrize("status", [400, 401, 404, 410])
    def test_other_client_errors_are_transient_but_say_so(
        self, receiver: Receiver, status: int
    ) -> None:
        receiver.status = status
        with pytest.raises(DeliveryError) as caught:
            local_sink(receiver.url).deliver(BODY, EVENT)
        assert not caught.value.permanent
        assert f"refused the event with {status}" in str(caught.value)
        assert "receiver is fixed" in str(caught.value)

    def test_redirects_are_not_followed(self, receiver: Receiver) -> None:
        receiver.status = 307
        receiver.headers = {"Location": f"{receiver.url}/elsewhere"}
        with pytest.raises(DeliveryError, match="redirects are not followed"):
            local_sink(f"{receiver.url}/hook").deliver(BODY, EVENT)
        assert [path for path, _, _ in receiver.requests] == ["/hook"]

    def test_nobody_listening_is_transient(self) -> None:
        # A port just released by a server of our own: nothing listens there now.
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        port = server.server_address[1]
        server.server_close()
        with pytest.raises(DeliveryError, match="cannot connect") as caught:
            local_sink(f"http://127.0.0.1:{port}/hook").deliver(BODY, EVENT)
        assert not caught.value.permanent

    def test_an_unresolvable_name_is_transient(self) -> None:
        with pytest.raises(DeliveryError, match="cannot resolve") as caught:
            local_sink("https://no-such-host.invalid/hook").deliver(BODY, EVENT)
        assert not caught.value.permanent


class TestAddressRules:
    def test_http_is_refused_without_allow_insecure(self, receiver: Receiver) -> None:
        sink = WebhookSink(Notification(type="webhook", url=f"{receiver.url}/hook"))
        with pytest.raises(DeliveryError, match="allow_insecure") as caught:
            sink.deliver(BODY, EVENT)
        assert caught.value.permanent
        assert receiver.requests == []

    @pytest.mark.parametrize(
        "url",
        [
            "https://127.0.0.1/hook",
            "https://localhost:8443/hook",
            "https://[::1]/hook",
            "https://10.1.2.3/hook",
            "https://192.168.0.10/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://0.0.0.0/hook",
            "https://[fe80::1]/hook",
            "https://224.0.0.1/hook",
            "https://100.64.0.1/hook",
        ],
    )
    def test_addresses_that_are_not_public_are_refused(self, url: str) -> None:
        sink = WebhookSink(Notification(type="webhook", url=url))
        with pytest.raises(DeliveryError, match="only public addresses") as caught:
            sink.deliver(BODY, EVENT)
        assert caught.value.permanent

    @pytest.mark.parametrize(
        ("address", "reason"),
        [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.0.0.1", "private"),
            ("fd00::1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("240.0.0.1", "reserved"),
            ("::ffff:192.168.1.1", "private"),
            ("2002:7f00:1::", "loopback"),
        ],
    )
    def test_forbidden_reasons(self, address: str, reason: str) -> None:
        found = forbidden_reason(ipaddress.ip_address(address))
        assert found is not None and reason in found

    @pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "1.1.1.1"])
    def test_public_addresses_pass(self, address: str) -> None:
        assert forbidden_reason(ipaddress.ip_address(address)) is None

    @pytest.mark.parametrize("url", ["ftp://ci.example/hook", "https:///hook", "hook"])
    def test_urls_that_are_not_http_are_refused(self, url: str) -> None:
        with pytest.raises(DeliveryError) as caught:
            WebhookSink(Notification(type="webhook", url=url)).deliver(BODY, EVENT)
        assert caught.value.permanent
