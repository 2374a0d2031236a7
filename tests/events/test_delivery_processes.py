"""Delivery end to end, with the dispatcher as a separate ``mlflow-governance events run``.

- A real HTTP receiver on 127.0.0.1 checks every signature and records every event.
- A dispatcher killed with SIGKILL in the middle of a batch loses nothing: a second one
  delivers the rest once the first one's claims expire, with the same ids.
- SQS, SNS and EventBridge through ``moto.server`` on 127.0.0.1, reached with
  ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mlflow_governance.audit.tables import outbox
from mlflow_governance.entry import build_store

pytestmark = [pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("mlflow-governance"))
SECRET = "a-shared-secret-for-the-test"


class Receiver(ThreadingHTTPServer):
    """Records the events POSTed to it, after checking their signature."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ids: list[str] = []
        self.bad: list[str] = []
        self.lock = threading.Lock()
        self.hold_at: int | None = None  # the n-th request blocks until released
        self.holding = threading.Event()
        self.release = threading.Event()
        self.expected: int | None = None
        self.all_in = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        header = self.headers.get("X-Governance-Signature", "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        expected = hmac.new(
            SECRET.encode(), f"{parts.get('t', '')}.".encode() + body, hashlib.sha256
        ).hexdigest()
        server = self.server
        with server.lock:
            if not hmac.compare_digest(expected, parts.get("v1", "")):
                server.bad.append(header)
            server.ids.append(json.loads(body)["id"])
            count = len(server.ids)
            if server.expected is not None and len(set(server.ids)) >= server.expected:
                server.all_in.set()
        if server.hold_at is not None and count == server.hold_at:
            server.holding.set()
            server.release.wait(timeout=120)
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _policy(tmp_path: Path, notification: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\nmode: audit-only\nnotifications:\n" + notification, encoding="utf-8"
    )
    return path


def _registry(tmp_path: Path, policy: Path, models: int) -> tuple[str, sa.Engine]:
    uri = f"governed+sqlite:///{tmp_path / 'registry.db'}"
    os.environ["MLFLOW_GOVERNANCE_POLICY"] = str(policy)
    try:
        store = build_store(uri)
        for i in range(models):
            store.create_registered_model(f"model-{i}")
            store.create_model_version(f"model-{i}", f"s3://models/{i}")
            store.transition_model_version_stage(f"model-{i}", 1, "Staging", False)
    finally:
        os.environ.pop("MLFLOW_GOVERNANCE_POLICY", None)
    return uri, store.engine


def _env(uri: str, policy: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "MLFLOW_REGISTRY_URI": uri,
        "MLFLOW_GOVERNANCE_POLICY": str(policy),
        "GOV_HOOK_SECRET": SECRET,
        **extra,
    }


def _event_ids(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(outbox.c.event_id)).scalars())


def _states(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))
        return {state: int(n) for state, n in rows}


def _webhook(url: str) -> str:
    return (
        f"  - {{type: webhook, url: '{url}', secret_env: GOV_HOOK_SECRET, allow_insecure: true}}\n"
    )


def test_a_separate_dispatcher_delivers_signed_events(tmp_path: Path, receiver: Receiver) -> None:
    policy = _policy(tmp_path, _webhook(receiver.url))
    uri, engine = _registry(tmp_path, policy, models=3)
    result = subprocess.run(
        [CLI, "events", "run", "--once", "--json"],
        env=_env(uri, policy),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["delivered"] == 6
    assert receiver.bad == []
    assert set(receiver.ids) == _event_ids(engine) and len(receiver.ids) == 6
    assert _states(engine) == {"delivered": 6}


def test_a_dispatcher_killed_mid_batch_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    policy = _policy(tmp_path, _webhook(receiver.url))
    uri, engine = _registry(tmp_path, policy, models=4)
    wanted = _event_ids(engine)
    receiver.hold_at = 3
    receiver.expected = len(wanted)
    first = subprocess.Popen(
        [CLI, "events", "run", "--lease", "1", "--interval", "0.1"],
        env=_env(uri, policy),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert receiver.holding.wait(timeout=120), "the dispatcher never reached the receiver"
        os.killpg(first.pid, signal.SIGKILL)  # mid-batch: one event is on the wire
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    receiver.release.set()
    assert _states(engine).get("delivered", 0) < len(wanted)
    second = subprocess.Popen(
        [CLI, "events", "run", "--lease", "1", "--interval", "0.1"],
        env=_env(uri, policy),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert receiver.all_in.wait(timeout=120), "events were lost"
    finally:
        # SIGTERM stops it after the pass in progress, whose settles are then written.
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)
    assert set(receiver.ids) == wanted
    # At least once: the event on the wire when the first dispatcher died came again,
    # with the same id.
    assert len(receiver.ids) >= len(wanted)
    assert _states(engine) == {"delivered": len(wanted)}
    assert receiver.bad == []


def test_sqs_sns_and_eventbridge_through_moto_server_with_the_dispatcher_as_a_process(
    tmp_path: Path,
) -> None:
    """All three AWS sinks; what SNS and EventBridge received is read from SQS queues."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        aws = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
        )
        sqs = session.client("sqs", endpoint_url=endpoint)
        sns = session.client("sns", endpoint_url=endpoint)
        events = session.client("events", endpoint_url=endpoint)

        def queue(name: str) -> tuple[str, str]:
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            return url, arn["Attributes"]["QueueArn"]

        direct, _ = queue("direct")
        via_sns, via_sns_arn = queue("via-sns")
        via_bus, via_bus_arn = queue("via-bus")
        topic = sns.create_topic(Name="model-events")["TopicArn"]
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=via_sns_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        events.put_rule(Name="all", EventPattern=json.dumps({"source": ["mlflow.governance"]}))
        events.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": via_bus_arn}])
        policy = _policy(
            tmp_path,
            f"  - {{type: sqs, queue_url: '{direct}'}}\n"
            f"  - {{type: sns, topic_arn: '{topic}'}}\n"
            "  - {type: eventbridge, bus: default, source: mlflow.governance}\n",
        )
        uri, engine = _registry(tmp_path, policy, models=2)
        result = subprocess.run(
            [CLI, "events", "run", "--once", "--json"],
            env=_env(uri, policy, **aws),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["delivered"] == 4, result.stdout

        def received(url: str) -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = []
            for _ in range(10):
                batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
                got += [json.loads(m["Body"]) for m in batch.get("Messages", [])]
                if len(got) >= 4 or not batch.get("Messages"):
                    break
            return got

        wanted = _event_ids(engine)
        assert {m["id"] for m in received(direct)} == wanted
        assert {m["id"] for m in received(via_sns)} == wanted
        bus = received(via_bus)  # EventBridge wraps the CloudEvent as the event's detail
        assert {m["detail"]["id"] for m in bus} == wanted
        assert {m["detail-type"] for m in bus} == {
            "model_version.registered",
            "model_version.transitioned",
        }
    finally:
        server.stop()
