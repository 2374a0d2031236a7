"""The Slack sink against a real local receiver standing in for an incoming webhook."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlflow_governance.events.sinks import DeliveryError
from mlflow_governance.events.sinks.slack import SlackSink, message
from mlflow_governance.policy import Notification
from tests.events.test_webhook_sink import BODY, EVENT, Receiver, receiver

__all__ = ["receiver"]  # the fixture, shared with the webhook tests


def slack(url: str, **fields: Any) -> SlackSink:
    return SlackSink(Notification(type="slack", url=url, allow_insecure=True, **fields))


def event(kind: str, **data: Any) -> dict[str, Any]:
    base = {"actor": "alice", "model": "fraud-detector", "version": 7, "request_id": None}
    return {**EVENT, "type": kind, "data": {**base, **data}}


def test_posts_the_message_as_json_with_a_link(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_GOVERNANCE_PUBLIC_URL", "https://mlflow.example/")
    slack(f"{receiver.url}/services/T0/B0/XYZ").deliver(BODY, EVENT)
    ((path, headers, body),) = receiver.requests
    assert path == "/services/T0/B0/XYZ"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "text": "Request #12: fraud-detector v7 → Production requested by alice\n"
        "<https://mlflow.example/governance/requests/12|Open request #12>"
    }


def test_no_link_without_a_public_url(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_GOVERNANCE_PUBLIC_URL", raising=False)
    slack(receiver.url).deliver(BODY, EVENT)
    assert "<" not in json.loads(receiver.requests[0][2])["text"]


def test_the_key_and_errors_keep_the_url_secret(receiver: Receiver) -> None:
    receiver.status = 404
    sink = slack(f"{receiver.url}/services/T0/B0/SECRET")
    assert sink.key.startswith("slack:127.0.0.1#") and "SECRET" not in sink.key
    with pytest.raises(DeliveryError) as caught:
        sink.deliver(BODY, EVENT)
    assert "SECRET" not in str(caught.value)
    assert not caught.value.permanent


def test_private_addresses_and_http_are_refused_without_allow_insecure(
    receiver: Receiver,
) -> None:
    for url in (receiver.url, "https://127.0.0.1/services/x"):
        with pytest.raises(DeliveryError) as caught:
            SlackSink(Notification(type="slack", url=url)).deliver(BODY, EVENT)
        assert caught.value.permanent
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("kind", "data", "text"),
    [
        (
            "promotion.requested",
            {
                "to": "Production",
                "request_id": 12,
                "approvals_missing": 1,
                "approver_roles": ["approver"],
            },
            "Request #12: fraud-detector v7 → Production needs 1 more approval from approver",
        ),
        (
            "promotion.approved",
            {"to": "Production", "request_id": 12, "actor": "dave", "comment": "looks good"},
            "Request #12: fraud-detector v7 → Production approved by dave\nComment: looks good",
        ),
        (
            "promotion.rejected",
            {"to": "Production", "request_id": 3},
            "Request #3: fraud-detector v7 → Production rejected by alice",
        ),
        (
            "promotion.applied",
            {"from": "Staging", "to": "Production", "request_id": 12},
            "Request #12: fraud-detector v7 Staging → Production applied by alice",
        ),
        (
            "model_version.transitioned",
            {"from": "None", "to": "Staging"},
            "fraud-detector v7 moved None → Staging by alice",
        ),
        ("model_version.registered", {}, "New version fraud-detector v7 registered by alice"),
        (
            "alias.set",
            {"alias": "champion"},
            "Alias @champion now points to fraud-detector v7 by alice",
        ),
        (
            "alias.deleted",
            {"alias": "champion"},
            "Alias @champion removed from fraud-detector v7 by alice",
        ),
        (
            "access.denied",
            {"actor": "mallory", "action": "delete_model_version", "reason": "protected"},
            "Refused: mallory tried delete_model_version on fraud-detector v7\nReason: protected",
        ),
        (
            "policy.applied",
            {"model": None, "version": None, "sha256": "abcdef0123456789"},
            "Governance policy abcdef012345 applied by alice",
        ),
    ],
)
def test_messages(kind: str, data: dict[str, Any], text: str) -> None:
    assert message(event(kind, **data)) == text


def test_user_text_cannot_ping_or_forge_links() -> None:
    text = message(event("promotion.approved", comment="<!channel> see <https://evil|docs> & go"))
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "&amp;" in text
