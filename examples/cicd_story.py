"""The CI/CD story, end to end on SQLite: gate checks, approvals, events, manifests, rollback.

A pipeline (the service account ``svc-ci``) takes each new version through the same
steps: ``check`` the Production gate, ``promote --to Staging``, ``request`` Production and
wait for two release managers. Events about every step go to a signed webhook (a
receiver this script starts on 127.0.0.1), and the approved version is rendered as
Kubernetes manifests for Argo CD to deploy.

- v1 passes the accuracy gate and goes to Production;
- v2 fails the gate in ``check`` and stops there;
- v3 is requested, approved twice and applied, and v1 is archived;
- the events arrive signed, and the manifests are rendered;
- a rollback to v1 goes through a request;
- ``history`` shows who did what, and when.

Run it with ``make demo`` or ``python examples/cicd_story.py`` (in an empty directory).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

POLICY = Path(__file__).parent / "policies" / "cicd.yaml"
MODEL = "fraud-detector"
SECRET = "demo-webhook-secret"  # in production: a secret store, named by secret_env


class Receiver(ThreadingHTTPServer):
    """What a CI system's webhook endpoint does first: check the signature."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.events: list[dict[str, Any]] = []
        self.forged = 0


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        fields = dict(
            part.split("=", 1) for part in self.headers.get("X-Governance-Signature", "").split(",")
        )
        expected = hmac.new(
            SECRET.encode(), f"{fields.get('t', '')}.".encode() + body, hashlib.sha256
        ).hexdigest()
        if hmac.compare_digest(expected, fields.get("v1", "")):
            self.server.events.append(json.loads(body))
        else:
            self.server.forged += 1
        self.send_response(204)
        self.end_headers()


def heading(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)))


def cli(user: str, *args: str) -> int:
    """Run one mlflow-governance command as ``user``; print it, its output and exit code."""
    from click.testing import CliRunner

    from mlflow_governance.cli import main

    os.environ["MLFLOW_TRACKING_USERNAME"] = user
    print(f"$ {user}> mlflow-governance {' '.join(args)}")
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    print(result.output.rstrip())
    if result.exit_code:
        print(f"(exit {result.exit_code})")
    return result.exit_code


def train(alpha: float, name: str) -> str:
    """Train a small classifier; log its accuracy; return the run id."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    with mlflow.start_run(run_name=name) as run:
        model = LogisticRegression(C=alpha, max_iter=5000).fit(x_train, y_train)
        mlflow.log_metric("accuracy", float(model.score(x_test, y_test)))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_test, model.predict(x_test)),
            pip_requirements=["scikit-learn"],
        )
    return run.info.run_id


def pipeline(version: int) -> bool:
    """The CI job for a new version: check, Staging, request Production, wait."""
    heading(f"CI: version {version}")
    if cli("svc-ci", "check", MODEL, str(version), "--gate", "production"):
        print(f"The gate's checks fail for version {version}: the pipeline stops here.")
        return False
    cli("svc-ci", "promote", MODEL, str(version), "--to", "Staging")
    cli("svc-ci", "request", MODEL, str(version), "--to", "Production", "-m", "CI: checks pass")
    request_id = _pending_request()
    # The pipeline would wait here (promote --wait); the release managers approve.
    cli("dave", "approve", str(request_id), "-m", "metrics reviewed")
    cli("erin", "approve", str(request_id), "-m", "go")
    return True


def _pending_request() -> int:
    from mlflow_governance.client import GovernanceClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = "oscar"
    pending = GovernanceClient().requests(state="pending", model=MODEL)
    return int(pending[0]["id"])


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    policy = Path("cicd-policy.yaml")
    policy.write_text(POLICY.read_text().replace("http://127.0.0.1:8765/hook", hook))
    os.environ.update(
        MLFLOW_REGISTRY_URI="governed+sqlite:///cicd.db",
        MLFLOW_TRACKING_URI="sqlite:///cicd-tracking.db",
        MLFLOW_GOVERNANCE_POLICY_REFRESH="0",
        GOV_HOOK_SECRET=SECRET,
    )
    import mlflow

    heading("The platform admin applies the CI/CD policy (a signed webhook included)")
    cli("admin", "policy", "apply", str(policy))

    heading("alice trains three versions; each logs its accuracy")
    os.environ["MLFLOW_TRACKING_USERNAME"] = "alice"
    mlflow.set_experiment("fraud")
    for n, alpha in enumerate((1.0, 0.001, 10.0), start=1):
        mv = mlflow.register_model(f"runs:/{train(alpha, f'fraud-v{n}')}/model", MODEL)
        print(f"alice registered {MODEL} version {mv.version}")

    for version in (1, 2, 3):
        pipeline(version)
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = "oscar"
    for mv in sorted(
        MlflowClient().search_model_versions(f"name = '{MODEL}'"), key=lambda m: int(m.version)
    ):
        print(f"  version {mv.version}: {mv.current_stage}")

    heading("The events reach the webhook, signed")
    cli("admin", "events", "run", "--once")
    print(f"The receiver verified {len(receiver.events)} signatures ({receiver.forged} forged):")
    for event in receiver.events:
        data = event["data"]
        print(f"  {event['type']:<28} {event['subject']:<20} by {data['actor']}")

    heading("GitOps: the manifests of what Production holds, for Argo CD")
    cli(
        "svc-ci",
        "gitops",
        "render",
        "--model",
        MODEL,
        "--stage",
        "Production",
        "--out",
        f"deploy/{MODEL}",
    )

    heading("Version 3 misbehaves: roll back to version 1, through a request")
    cli("svc-ci", "rollback", MODEL, "--stage", "Production", "-m", "p99 latency doubled")
    cli("dave", "approve", str(_pending_request()), "-m", "revert")
    os.environ["MLFLOW_TRACKING_USERNAME"] = "oscar"
    holder = MlflowClient().get_latest_versions(MODEL, ["Production"])[0]
    print(f"Production holds version {holder.version} again.")

    heading("Who did what, and when")
    cli("dave", "history", MODEL)
    cli("admin", "events", "run", "--once")
    cli("admin", "audit", "verify")
    receiver.shutdown()


if __name__ == "__main__":
    main()
