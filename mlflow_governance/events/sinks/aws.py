"""Amazon SQS, SNS and EventBridge, through boto3 and its standard credential chain.

Clients are made at the first delivery, not when the policy is loaded, so a policy naming
a queue never needs credentials to load, and are kept per sink (boto3 clients are
thread-safe). ``region`` comes from the policy entry, else the SDK's own default; the SDK
also honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_SQS`` ...) by itself, which is
how tests and LocalStack-style setups point it elsewhere.
"""

from __future__ import annotations

import threading
from typing import Any

from mlflow_governance.events.sinks.base import DeliveryError
from mlflow_governance.policy import Notification

# Error codes that say "later": AWS throttles per account and per API.
_THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "KMSThrottlingException",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
# Errors that retrying cannot fix until someone changes the policy or the resource.
_PERMANENT = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
        "InvalidParameterValue",
        "InvalidParameter",
        "ValidationException",
        "InvalidAddress",
    }
)


def _classify(shown: str, exc: Exception) -> DeliveryError:
    """A botocore error as a :class:`DeliveryError` (``permanent`` when retrying is futile)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"{shown}: {code or status}: {error.get('Message', '')}".rstrip(": ")
        if code in _THROTTLING or status == 429 or status >= 500:
            return DeliveryError(f"{text} (will retry)")
        # Access denied and the like stay transient: permissions get fixed, and the
        # events should still be there when they are.
        return DeliveryError(text, permanent=code in _PERMANENT)
    if isinstance(exc, NoRegionError):
        return DeliveryError(
            f"{shown}: no AWS region; set region in the policy entry or AWS_REGION "
            "(or AWS_DEFAULT_REGION) in the dispatcher's environment"
        )
    if isinstance(exc, NoCredentialsError):
        return DeliveryError(f"{shown}: no AWS credentials found by the standard chain")
    # Connection errors, timeouts, bad endpoint settings: all worth another try.
    return DeliveryError(f"{shown}: {type(exc).__name__}: {exc}")


class _AwsSink:
    """What the three AWS sinks share: filters, a lazy client and error mapping."""

    service = ""

    def __init__(self, notification: Notification) -> None:
        self.notification = notification
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        """``<service>:<destination>``."""
        return f"{self.service}:{self.destination}"

    @property
    def destination(self) -> str:
        """The queue URL, topic ARN or bus, as the policy names it."""
        raise NotImplementedError

    def wants(self, event_type: str, model: str | None) -> bool:
        """The policy entry's ``events`` and ``models`` globs."""
        return self.notification.wants(event_type, model)

    def client(self) -> Any:
        """The boto3 client of this sink, made once."""
        with self._lock:
            if self._client is None:
                import boto3

                # A session per sink: the default session is shared module state, and
                # creating clients from it is not thread-safe.
                session = boto3.session.Session()
                self._client = session.client(self.service, region_name=self.notification.region)
            return self._client

    def deliver(self, body: bytes, event: dict[str, Any]) -> None:
        """Send the CloudEvent.

        Raises:
            DeliveryError: The service refused it or could not be reached.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._send(self.client(), body, event)
        except (BotoCoreError, ClientError) as exc:
            raise _classify(f"{self.service} {self.destination}", exc) from exc

    def _send(self, client: Any, body: bytes, event: dict[str, Any]) -> None:
        raise NotImplementedError


class SqsSink(_AwsSink):
    """``SendMessage`` with the CloudEvent as the message body.

    A FIFO queue (URL ending in ``.fifo``) gets the model as the message group, so events
    about one model are consumed in order, and the event id as the deduplication id, so a
    redelivery within SQS's five-minute window is dropped by SQS itself.
    """

    service = "sqs"

    @property
    def destination(self) -> str:
        """The queue URL."""
        return str(self.notification.queue_url)

    def _send(self, client: Any, body: bytes, event: dict[str, Any]) -> None:
        queue_url = self.destination
        params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body.decode()}
        if queue_url.endswith(".fifo"):
            # Group ids allow at most 128 characters; events about no model share one group.
            params["MessageGroupId"] = str(event.get("model") or "governance")[:128]
            params["MessageDeduplicationId"] = str(event["event_id"])
        client.send_message(**params)


class SnsSink(_AwsSink):
    """``Publish`` with the CloudEvent as the message."""

    service = "sns"

    @property
    def destination(self) -> str:
        """The topic ARN."""
        return str(self.notification.topic_arn)

    def _send(self, client: Any, body: bytes, event: dict[str, Any]) -> None:
        params: dict[str, Any] = {"TopicArn": self.destination, "Message": body.decode()}
        if self.destination.endswith(".fifo"):
            params["MessageGroupId"] = str(event.get("model") or "governance")[:128]
            params["MessageDeduplicationId"] = str(event["event_id"])
        client.publish(**params)


class EventBridgeSink(_AwsSink):
    """``PutEvents``: ``Source`` from the policy, the event type as ``DetailType``, the
    CloudEvent as ``Detail``."""

    service = "events"

    @property
    def key(self) -> str:
        """``eventbridge:<bus>``, with ``@<region>`` when the policy names one."""
        region = f"@{self.notification.region}" if self.notification.region else ""
        return f"eventbridge:{self.destination}{region}"

    @property
    def destination(self) -> str:
        """The bus name."""
        return self.notification.bus or "default"

    def _send(self, client: Any, body: bytes, event: dict[str, Any]) -> None:
        entry = {
            "Source": self.notification.source or "mlflow.governance",
            "DetailType": str(event["type"]),
            "Detail": body.decode(),
            "EventBusName": self.destination,
        }
        answer = client.put_events(Entries=[entry])
        # PutEvents answers 200 even when it took nothing; the entry says why.
        if answer.get("FailedEntryCount"):
            failed = (answer.get("Entries") or [{}])[0]
            code = failed.get("ErrorCode") or "unknown error"
            raise DeliveryError(
                f"eventbridge {self.destination}: the event was not accepted: {code}: "
                f"{failed.get('ErrorMessage') or ''}".rstrip(": ")
            )
