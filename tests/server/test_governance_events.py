"""Events and GitOps through the governance server.

A server started with ``MLFLOW_GOVERNANCE_DISPATCHER=true`` delivers the events of the
changes made through it to a signed webhook, by itself; ``events`` and ``events/retry``
answer holders of ``audit:read`` and ``policy:admin`` only; ``gitops/render`` renders what
a stage holds for readers of the model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import POLICIES, GovServer, governance_server, register

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("governance-events")]

SECRET = "server-dispatcher-secret"


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.events: list[dict[str, Any]] = []
        self.forged = 0
        self.arrived = threading.Condition()


class _Hook(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        fields = dict(
            p.split("=", 1) for p in self.headers.get("X-Governance-Signature", "").split(",")
        )
        good = hmac.new(
            SECRET.encode(), f"{fields.get('t', '')}.".encode() + body, hashlib.sha256
        ).hexdigest()
        with self.server.arrived:
            if hmac.compare_digest(good, fields.get("v1", "")):
                self.server.events.append(json.loads(body))
            else:
                self.server.forged += 1
            self.server.arrived.notify_all()
        self.send_response(204)
        self.end_headers()


@pytest.fixture(scope="module")
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gov(tmp_path_factory: pytest.TempPathFactory, receiver: _Receiver) -> Iterator[GovServer]:
    workdir = tmp_path_factory.mktemp("governance-events")
    policy = workdir / "policy.yaml"
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    policy.write_text(
        (POLICIES / "server.yaml").read_text()
        + "\nnotifications:\n"
        + f"  - {{type: webhook, url: '{url}', secret_env: GOV_HOOK_SECRET, "
        + "allow_insecure: true, models: ['events-*']}\n",
        encoding="utf-8",
    )
    extra = {
        "MLFLOW_GOVERNANCE_DISPATCHER": "true",
        "GOV_HOOK_SECRET": SECRET,
    }
    with governance_server(workdir, policy=str(Path(policy)), extra_env=extra) as running:
        yield running


def _wait_for(receiver: _Receiver, subject: str, kind: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next(
            (e for e in receiver.events if e["subject"] == subject and e["type"] == kind), None
        )

    with receiver.arrived:
        assert receiver.arrived.wait_for(lambda: found() is not None, timeout=120), (
            subject,
            kind,
            [(e["type"], e["subject"]) for e in receiver.events],
        )
        event = found()
    assert event is not None
    return event


def test_the_server_delivers_events_by_itself(gov: GovServer, receiver: _Receiver) -> None:
    version = register(gov, "alice", "events-model")  # and staged by carol
    registered = _wait_for(receiver, f"events-model/{version}", "model_version.registered")
    assert registered["data"]["actor"] == "alice"
    assert registered["data"]["identity_source"] == "server"
    moved = _wait_for(receiver, f"events-model/{version}", "model_version.transitioned")
    assert (moved["data"]["actor"], moved["data"]["to"]) == ("carol", "Staging")
    assert receiver.forged == 0
    listed = gov.call("admin", "GET", "/events", params={"limit": 1000})
    assert {"model_version.registered", "model_version.transitioned"} <= {
        e["type"] for e in listed if e["model"] == "events-model"
    }


def test_events_routes_need_their_rights(gov: GovServer) -> None:
    gov.call("oscar", "GET", "/events", expect=403)
    gov.call("mallory", "GET", "/events", expect=403)
    assert isinstance(gov.call("dave", "GET", "/events"), list)  # approver: audit:read
    gov.call("dave", "POST", "/events/retry", json={"dead": True}, expect=403)
    assert gov.call("admin", "POST", "/events/retry", json={"dead": True}) == {"retried": 0}
    gov.call("admin", "POST", "/events/retry", json={}, expect=400)
    gov.call("admin", "POST", "/events/retry", json={"event": 99999999}, expect=404)


def test_gitops_render_over_rest(gov: GovServer) -> None:
    version = register(gov, "alice", "events-gitops")
    rendered = gov.call(
        "oscar", "GET", "/gitops/render", params={"model": "events-gitops", "stage": "Staging"}
    )
    assert (rendered["version"], rendered["target"]) == (version, "Staging")
    assert f"models:/events-gitops/{version}" in rendered["files"]["deployment.yaml"]
    gov.call(
        "mallory",
        "GET",
        "/gitops/render",
        params={"model": "events-gitops", "stage": "Staging"},
        expect=403,
    )
