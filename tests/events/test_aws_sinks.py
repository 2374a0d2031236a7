"""The SQS, SNS and EventBridge sinks against moto: in process, and once as a server.

Each test reads back what the sink sent through the service itself (a queue subscribed to
the topic, a rule targeting a queue), so the assertions are about what a consumer gets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from mlflow_governance.events.sinks import DeliveryError, sinks_for
from mlflow_governance.events.sinks.aws import EventBridgeSink, SnsSink, SqsSink
from mlflow_governance.policy import Notification, load_policy_text
from tests.events.test_webhook_sink import BODY, EVENT

REGION = "eu-west-1"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, and nothing from the machine's AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def aws(credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


def receive(sqs: Any, queue_url: str) -> list[str]:
    answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [message["Body"] for message in answer.get("Messages", [])]


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


@pytest.mark.usefixtures("aws")
class TestInProcess:
    def test_sqs_standard_queue(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="model-events")["QueueUrl"]
        sink = SqsSink(Notification(type="sqs", queue_url=url))
        sink.deliver(BODY, EVENT)
        assert receive(sqs, url) == [BODY.decode()]
        assert json.loads(BODY)["id"] == EVENT["event_id"]
        assert sink.key == f"sqs:{url}"

    def test_sqs_fifo_queue_groups_by_model_and_deduplicates(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="model-events.fifo", Attributes={"FifoQueue": "true"})[
            "QueueUrl"
        ]
        sink = SqsSink(Notification(type="sqs", queue_url=url))
        sink.deliver(BODY, EVENT)
        sink.deliver(BODY, EVENT)  # a redelivery: same event id, dropped by SQS
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
        (message,) = answer["Messages"]
        assert message["Body"] == BODY.decode()
        assert message["Attributes"]["MessageGroupId"] == "fraud-detector"
        assert message["Attributes"]["MessageDeduplicationId"] == EVENT["event_id"]

    def test_sns_topic(self) -> None:
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="model-events")["TopicArn"]
        url = sqs.create_queue(QueueName="topic-reader")["QueueUrl"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(sqs, url))
        SnsSink(Notification(type="sns", topic_arn=topic)).deliver(BODY, EVENT)
        (body,) = receive(sqs, url)
        assert json.loads(body)["Message"] == BODY.decode()

    def test_eventbridge_bus(self) -> None:
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events.create_event_bus(Name="governance")
        url = sqs.create_queue(QueueName="bus-reader")["QueueUrl"]
        events.put_rule(
            Name="all-governance",
            EventBusName="governance",
            EventPattern=json.dumps({"source": ["mlflow.governance"]}),
        )
        events.put_targets(
            Rule="all-governance",
            EventBusName="governance",
            Targets=[{"Id": "reader", "Arn": queue_arn(sqs, url)}],
        )
        notification = Notification(
            type="eventbridge", bus="governance", source="mlflow.governance"
        )
        EventBridgeSink(notification).deliver(BODY, EVENT)
        (body,) = receive(sqs, url)
        delivered = json.loads(body)
        assert delivered["source"] == "mlflow.governance"
        assert delivered["detail-type"] == "promotion.requested"
        assert delivered["detail"] == json.loads(BODY)

    def test_a_missing_queue_is_permanent(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="gone")["QueueUrl"]
        sqs.delete_queue(QueueUrl=url)
        with pytest.raises(DeliveryError, match="sqs ") as caught:
            SqsSink(Notification(type="sqs", queue_url=url)).deliver(BODY, EVENT)
        assert caught.value.permanent

    def test_a_missing_topic_is_an_error(self) -> None:
        arn = f"arn:aws:sns:{REGION}:123456789012:missing"
        with pytest.raises(DeliveryError, match="sns arn:aws:sns"):
            SnsSink(Notification(type="sns", topic_arn=arn)).deliver(BODY, EVENT)

    def test_the_client_is_made_once_per_sink(self) -> None:
        sink = SqsSink(Notification(type="sqs", queue_url="https://sqs.example/1/q"))
        assert sink.client() is sink.client()
        other = SqsSink(Notification(type="sqs", queue_url="https://sqs.example/1/q"))
        assert other.client() is not sink.client()

    def test_the_policy_region_wins(self) -> None:
        sink = SnsSink(Notification(type="sns", topic_arn="arn:aws:sns:x", region="us-east-2"))
        assert sink.client().meta.region_name == "us-east-2"
        default = SnsSink(Notification(type="sns", topic_arn="arn:aws:sns:x"))
        assert default.client().meta.region_name == REGION

    def test_built_from_a_loaded_policy(self) -> None:
        policy = load_policy_text(
            "version: 1\nnotifications:\n"
            "  - {type: sqs, queue_url: 'https://sqs.eu-west-1.amazonaws.com/1/q',"
            " models: ['fraud-*']}\n"
            "  - {type: sns, topic_arn: 'arn:aws:sns:eu-west-1:1:t', events: [access.denied]}\n"
            "  - {type: eventbridge, region: us-east-1}\n"
        )
        sqs, sns, bridge = sinks_for(policy.notifications)
        assert isinstance(sqs, SqsSink) and isinstance(sns, SnsSink)
        assert bridge.key == "eventbridge:default@us-east-1"
        assert sqs.wants("alias.set", "fraud-x") and not sqs.wants("alias.set", "churn")
        assert sns.wants("access.denied", "churn") and not sns.wants("alias.set", None)


def test_through_a_moto_server_and_aws_endpoint_url(
    credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's own ``AWS_ENDPOINT_URL`` support points the sink at another endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="served")["QueueUrl"]
        SqsSink(Notification(type="sqs", queue_url=url)).deliver(BODY, EVENT)
        assert receive(sqs, url) == [BODY.decode()]
    finally:
        server.stop()
