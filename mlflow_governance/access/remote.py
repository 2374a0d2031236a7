"""Remote mode: the governance actions over the governance server's REST API.

Requests go through MLflow's own HTTP helpers with MLflow's client settings
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, ``MLFLOW_TRACKING_TOKEN``,
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ...), so whatever
lets ``MlflowClient`` reach the server lets this reach it. The server decides who the
caller is; nothing here asserts a name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from mlflow_governance.exceptions import Unreachable, error_from_code

API_PATH = "/api/2.0/mlflow-governance"

#: Answers worth another try: the server is overloaded or a proxy could not reach it. A
#: 500 is not retried: the action may have happened.
_RETRY_CODES = (429, 502, 503, 504)
#: A person waits at a prompt: a down server is reported in seconds, not after MLflow's
#: default of 7 retries with exponential backoff. MLflow's settings win when given.
_DEFAULT_RETRIES = 2
_DEFAULT_BACKOFF = 0.5
_DEFAULT_TIMEOUT = 60


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def _query(args: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in args.items():
        if value is None or value == "" or value is False:
            continue
        if isinstance(value, list | tuple | frozenset | set):
            out[key] = [str(item) for item in sorted(value)]
        else:
            out[key] = "true" if value is True else str(value)
    return out


class RemoteAccess:
    """Every governance action, sent to a governance server.

    Args:
        uri: The server's base URL (``http://host:port`` or ``https://…``).
    """

    remote = True

    def __init__(self, uri: str) -> None:
        from mlflow.utils.credentials import get_default_host_creds

        self.uri = uri.rstrip("/")
        self._creds = get_default_host_creds(self.uri)

    @property
    def where(self) -> str:
        """The server, for messages."""
        return self.uri

    def notice(self) -> str | None:
        """Nothing to warn about locally: the server enforces its own policy."""
        return None

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request; return the parsed JSON, or raise the server's error.

        Raises:
            Unreachable: No answer, or an answer that is not the governance API's.
            GovernanceError: The server's refusal or error, with its class and message.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.utils.rest_utils import http_request

        kwargs: dict[str, Any] = {}
        if params:
            kwargs["params"] = _query(params)
        if body is not None:
            kwargs["json"] = dict(body)
        try:
            response = http_request(
                self._creds,
                f"{API_PATH}/{path}",
                method,
                max_retries=int(_setting("MLFLOW_HTTP_REQUEST_MAX_RETRIES", _DEFAULT_RETRIES)),
                backoff_factor=_setting("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", _DEFAULT_BACKOFF),
                retry_codes=_RETRY_CODES,
                timeout=_setting("MLFLOW_HTTP_REQUEST_TIMEOUT", _DEFAULT_TIMEOUT),
                raise_on_status=False,
                **kwargs,
            )
        except MlflowException as exc:
            raise Unreachable(
                f"Cannot reach the governance server at {self.uri}: {_first_line(exc.message)}. "
                "Check the URL (--tracking-uri or MLFLOW_TRACKING_URI) and that the server is "
                "running with --app-name governance; then try again."
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            if isinstance(data, dict) and "message" in data:
                raise error_from_code(data.get("error_code"), str(data["message"]))
            if response.status_code == 401:
                raise error_from_code(
                    "PERMISSION_DENIED",
                    f"The governance server at {self.uri} wants credentials (HTTP 401): set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                    "MLFLOW_TRACKING_TOKEN.",
                )
            raise Unreachable(
                f"The server at {self.uri} answered HTTP {response.status_code} to "
                f"{method} {API_PATH}/{path}, not as the governance API: is it started with "
                "--app-name governance?"
            )
        if data is None:
            raise Unreachable(
                f"The server at {self.uri} answered {method} {API_PATH}/{path} with something "
                "other than JSON: is it started with --app-name governance?"
            )
        return data

    # ------------------------------------------------------------------ requests

    def list_requests(self, state: str | None = None, model: str | None = None) -> Any:
        """Requests on models the caller may read, newest first."""
        return self._call("GET", "requests", params={"state": state, "model": model})

    def get_request(self, request_id: int) -> Any:
        """One request."""
        return self._call("GET", f"requests/{int(request_id)}")

    def open_request(self, model: str, version: int, to: str, comment: str | None = None) -> Any:
        """Open (or reuse) a promotion request."""
        body: dict[str, Any] = {
            "model": model,
            "version": version,
            "target": to,
            "comment": comment,
        }
        return self._call("POST", "requests", body=body)

    def vote(self, request_id: int, action: str, comment: str | None = None) -> Any:
        """Approve, reject or cancel a request."""
        return self._call("POST", f"requests/{int(request_id)}/{action}", body={"comment": comment})

    # ------------------------------------------------------------------ moves

    def check(self, model: str, version: int, gate: str) -> Any:
        """A gate's checks on a version."""
        return self._call("GET", "check", params={"model": model, "version": version, "gate": gate})

    def promote(self, model: str, version: int, to: str, comment: str | None = None) -> Any:
        """Apply the move, or open (or reuse) its request; never waits on the server."""
        body = {"model": model, "version": version, "to": to, "comment": comment}
        return self._call("POST", "promote", body=body)

    def rollback(
        self,
        model: str,
        stage: str | None = None,
        alias: str | None = None,
        comment: str | None = None,
    ) -> Any:
        """Restore the previous holder of a stage or alias."""
        body = {"model": model, "stage": stage, "alias": alias, "comment": comment}
        return self._call("POST", "rollback", body=body)

    # ------------------------------------------------------------------ audit

    def history(self, model: str, at: str | None = None) -> Any:
        """Stage and alias history."""
        return self._call("GET", "history", params={"model": model, "at": at})

    def audit_list(self, args: Mapping[str, Any]) -> Any:
        """Audit rows."""
        return self._call("GET", "audit", params=args)

    def audit_export(self, args: Mapping[str, Any]) -> Any:
        """Every matching audit row."""
        return self._call("GET", "audit/export", params=args)

    def audit_verify(self, checkpoint: str | None = None) -> Any:
        """Verify the chain on the server, against a checkpoint's text if given."""
        body: dict[str, Any] = {}
        if checkpoint is not None:
            try:
                body["checkpoint"] = json.loads(checkpoint)
            except ValueError:
                body["checkpoint"] = checkpoint  # the server explains what is wrong with it
        return self._call("POST", "audit/verify", body=body)

    def audit_checkpoint(self) -> Any:
        """The chain head, to keep outside the database."""
        return self._call("POST", "audit/checkpoint", body={})

    def audit_reconcile(self) -> Any:
        """The server's registry against what its audit log says it is."""
        return self._call("GET", "audit/reconcile")

    def audit_retain(self, before: str, archive: str) -> Any:
        """Archive the rows older than ``before`` to ``archive`` (a path on the server, or
        S3 as the server's credentials reach it), then cut them."""
        return self._call("POST", "audit/retain", body={"before": before, "archive": archive})

    # ------------------------------------------------------------------ events

    def events_list(self, state: str | None = None, limit: int | None = None) -> Any:
        """Outbox events on the server's database, newest first."""
        return self._call("GET", "events", params={"state": state, "limit": limit})

    def events_retry(self, event: int | None = None, dead: bool = False) -> Any:
        """Make an event, or every dead one, due again."""
        return self._call("POST", "events/retry", body={"event": event, "dead": dead})

    def gitops_render(
        self,
        model: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        image: str | None = None,
    ) -> Any:
        """The manifests the server renders for a stage or alias of ``model``."""
        params = {"model": model, "alias": alias, "stage": stage, "image": image}
        return self._call("GET", "gitops/render", params=params)

    # ------------------------------------------------------------------ policy and identity

    def policy_show(self) -> Any:
        """The policy in force on the server and where it comes from."""
        return self._call("GET", "policy")

    def policy_apply(self, text: str, source: str) -> Any:
        """Apply a policy text on the server."""
        return self._call("POST", "policy", body={"policy": text, "source": source})

    def policy_explain(self, user: str, model: str, groups: frozenset[str] = frozenset()) -> Any:
        """What ``user`` may do on ``model``."""
        params = {"user": user, "model": model, "group": sorted(groups)}
        return self._call("GET", "policy/explain", params=params)

    def whoami(self) -> Any:
        """The identity the server sees, and the server."""
        data = self._call("GET", "whoami")
        if isinstance(data, dict):
            data["server"] = self.uri
        return data


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no answer"
    if len(line) > 300:
        line = line[:299] + "…"
    return line.rstrip(".")


__all__ = ["API_PATH", "RemoteAccess"]
