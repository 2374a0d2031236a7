"""``notifications:``: the ``slack`` type and the ``models`` filter of every type."""

from __future__ import annotations

import pytest
import yaml

from mlflow_governance.exceptions import PolicyFileError, PolicyIssue
from mlflow_governance.policy import load_policy_text, policy_to_dict
from mlflow_governance.policy.model import NOTIFICATION_TYPES

SLACK = "https://hooks.slack.com/services/T000/B000/XXXX"


def issues(text: str) -> tuple[PolicyIssue, ...]:
    with pytest.raises(PolicyFileError) as caught:
        load_policy_text(f"version: 1\nnotifications:\n{text}")
    return caught.value.issues


class TestSlack:
    def test_a_slack_destination(self) -> None:
        policy = load_policy_text(
            f"version: 1\nnotifications:\n  - {{type: slack, url: '{SLACK}', "
            "events: ['promotion.*'], models: ['fraud-*']}\n"
        )
        (slack,) = policy.notifications
        assert (slack.type, slack.url, slack.allow_insecure) == ("slack", SLACK, False)
        assert slack.wants("promotion.requested", "fraud-detector")
        assert "slack" in NOTIFICATION_TYPES

    def test_the_url_is_required(self) -> None:
        (issue,) = issues("  - {type: slack}\n")
        assert (issue.field, issue.line) == ("notifications[0]", 3)
        assert issue.message == "missing required key 'url', e.g. url: ..."

    def test_webhook_only_keys_are_refused(self) -> None:
        (issue,) = issues(f"  - {{type: slack, url: '{SLACK}', secret_env: X}}\n")
        assert issue.field == "notifications[0].secret_env"
        assert issue.valid == ("type", "url", "events", "models", "allow_insecure")

    def test_http_needs_allow_insecure(self) -> None:
        (issue,) = issues("  - {type: slack, url: 'http://127.0.0.1:9/hook'}\n")
        assert issue.field == "notifications[0].url"
        assert "allow_insecure: true" in issue.message
        local = load_policy_text(
            "version: 1\nnotifications:\n"
            "  - {type: slack, url: 'http://127.0.0.1:9/hook', allow_insecure: true}\n"
        )
        assert local.notifications[0].allow_insecure

    def test_a_misspelt_type_suggests_slack(self) -> None:
        (issue,) = issues(f"  - {{type: slak, url: '{SLACK}'}}\n")
        assert issue.field == "notifications[0].type"
        assert issue.message == "unknown notification type 'slak'; did you mean 'slack'?"
        assert issue.valid == NOTIFICATION_TYPES


class TestModels:
    @pytest.mark.parametrize(
        "entry",
        [
            "{type: webhook, url: 'https://ci.example/hook'",
            "{type: slack, url: 'https://hooks.slack.com/x'",
            "{type: sqs, queue_url: 'https://sqs.eu-west-1.amazonaws.com/1/q'",
            "{type: sns, topic_arn: 'arn:aws:sns:eu-west-1:1:t'",
            "{type: eventbridge",
        ],
    )
    def test_every_type_takes_model_globs(self, entry: str) -> None:
        policy = load_policy_text(
            f"version: 1\nnotifications:\n  - {entry}, models: ['fraud-*', churn]}}\n"
        )
        (notification,) = policy.notifications
        assert notification.models == ("fraud-*", "churn")
        assert notification.wants("alias.set", "fraud-detector")
        assert notification.wants("alias.set", "churn")
        assert not notification.wants("alias.set", "churn-v2")
        # An event about no model (policy.applied) is decided by its type alone.
        assert notification.wants("policy.applied", None)

    def test_all_models_by_default(self) -> None:
        policy = load_policy_text("version: 1\nnotifications: [{type: eventbridge}]\n")
        assert policy.notifications[0].models == ("*",)
        assert policy.notifications[0].wants("alias.set", "anything")

    def test_the_event_filter_still_applies(self) -> None:
        policy = load_policy_text(
            "version: 1\nnotifications: [{type: eventbridge, events: [alias.set], models: [a]}]\n"
        )
        assert not policy.notifications[0].wants("alias.deleted", "a")

    def test_a_bad_glob(self) -> None:
        (issue,) = issues("  - {type: eventbridge, models: ['fraud-[ab']}\n")
        assert issue.field == "notifications[0].models[0]"
        assert issue.message == "bad glob: unbalanced '[' at position 7 in 'fraud-[ab'"

    def test_not_a_list(self) -> None:
        (issue,) = issues("  - {type: eventbridge, models: fraud-*}\n")
        assert issue.field == "notifications[0].models"
        assert issue.message == "expected a list of model name globs, got the text 'fraud-*'"

    def test_an_empty_list(self) -> None:
        (issue,) = issues("  - {type: eventbridge, models: []}\n")
        assert issue.field == "notifications[0].models"
        assert "no event" in issue.message

    def test_an_item_that_is_not_text(self) -> None:
        (issue,) = issues("  - {type: eventbridge, models: [3]}\n")
        assert issue.field == "notifications[0].models[0]"
        assert issue.message == "expected a non-empty text, got the number 3"

    def test_round_trips_through_policy_show(self) -> None:
        policy = load_policy_text(
            "version: 1\nnotifications:\n"
            f"  - {{type: slack, url: '{SLACK}', models: ['fraud-*']}}\n"
            "  - {type: sqs, queue_url: 'https://sqs.eu-west-1.amazonaws.com/1/q'}\n"
        )
        data = policy_to_dict(policy)
        assert data["notifications"][0] == {
            "type": "slack",
            "events": ["*"],
            "models": ["fraud-*"],
            "url": SLACK,
            "allow_insecure": False,
        }
        assert data["notifications"][1]["models"] == ["*"]
        assert load_policy_text(yaml.safe_dump(data)) == policy
