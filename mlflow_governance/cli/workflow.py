"""Policy and promotion commands: ``policy``, ``request``, ``approve``, ``check``, ..."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mlflow_governance.cli._common import emit, json_option, registry_option, table

if TYPE_CHECKING:
    from mlflow_governance.client import GovernanceClient

F = TypeVar("F", bound=Callable[..., Any])
_REQUEST_COLUMNS = ("id", "model", "version", "target", "state", "requester", "approvals", "needs")


@contextmanager
def _errors(code: int = 1) -> Iterator[None]:
    """Print plugin and MLflow errors as one message and exit with ``code``."""
    from mlflow.exceptions import MlflowException

    from mlflow_governance.exceptions import GovernanceError

    try:
        yield
    except MlflowException as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(code)
    except GovernanceError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(code)


def _client(registry_uri: str) -> GovernanceClient:
    from mlflow_governance.client import GovernanceClient

    with _errors():
        return GovernanceClient(registry_uri)


def _request_rows(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "approvals": ", ".join(a["approver"] for a in r["approvals"]) or "-"}
        for r in requests
    ]


def _show_request(data: dict[str, Any], as_json: bool, lead: str = "") -> None:
    text = lead + table(_request_rows([data]), _REQUEST_COLUMNS)
    if data.get("apply_error"):
        text += f"\nApproved, but not applied: {data['apply_error']}"
    emit(data, as_json, text=text)


def _comment(func: F) -> F:
    return click.option("--comment", "-m", help="Why (kept with the request).")(func)


# ---------------------------------------------------------------------- policy


@click.group()
def policy() -> None:
    """Validate, apply, show and explain the policy."""


@policy.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@json_option
def policy_validate(file: str, as_json: bool) -> None:
    """Check a policy file; report every problem with file, line, field and valid values."""
    from mlflow_governance.exceptions import PolicyFileError
    from mlflow_governance.policy import load_policy

    try:
        loaded = load_policy(file)
    except PolicyFileError as exc:
        issues = [
            {
                "file": i.file,
                "line": i.line,
                "column": i.column,
                "field": i.field,
                "message": i.message,
                "valid": list(i.valid),
            }
            for i in exc.issues
        ]
        emit({"valid": False, "issues": issues}, as_json, text=exc.message)
        sys.exit(1)
    emit(
        {
            "valid": True,
            "mode": loaded.mode,
            "roles": len(loaded.roles),
            "bindings": len(loaded.bindings),
            "gates": len(loaded.gates),
        },
        as_json,
        text=f"{file}: valid ({loaded.mode}; {len(loaded.roles)} roles, "
        f"{len(loaded.bindings)} bindings, {len(loaded.gates)} gates).",
    )


@policy.command("apply")
@registry_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@json_option
def policy_apply(registry_uri: str, file: str, as_json: bool) -> None:
    """Store FILE as the applied policy (versioned, audited with a diff; needs policy:admin)."""
    client = _client(registry_uri)
    with _errors():
        result = client.apply_policy(file)
    if not result["changed"]:
        emit(result, as_json, text=f"Policy unchanged (already applied as #{result['id']}).")
        return
    note = ""
    import os

    if os.environ.get("MLFLOW_GOVERNANCE_POLICY"):
        note = (
            "\nNote: MLFLOW_GOVERNANCE_POLICY is set in this environment; processes that "
            "have it use that file instead of the applied policy."
        )
    emit(
        result,
        as_json,
        text=f"Applied policy #{result['id']} (sha256 {result['sha256'][:12]})."
        f"\n{result['diff']}{note}",
    )


@policy.command("show")
@registry_option
@json_option
def policy_show(registry_uri: str, as_json: bool) -> None:
    """Print the policy in force and where it comes from."""
    import yaml

    from mlflow_governance.policy import policy_to_dict

    client = _client(registry_uri)
    with _errors():
        loaded = client.store.policies.current()
    if loaded is None:
        emit(
            {"origin": "default", "policy": {"version": 1, "mode": "audit-only"}},
            as_json,
            text="# No policy configured: built-in default (audit-only).\nversion: 1\n"
            "mode: audit-only",
        )
        return
    data = policy_to_dict(loaded.policy)
    emit(
        {"origin": loaded.origin, "policy": data},
        as_json,
        text=f"# origin: {loaded.origin}\n" + yaml.safe_dump(data, sort_keys=False),
    )


@policy.command("explain")
@registry_option
@click.option("--user", "user", required=True, help="The user to explain.")
@click.option("--model", "model", required=True, help="The registered model name.")
@click.option("--group", "groups", multiple=True, help="Extra groups (as a proxy would send).")
@json_option
def policy_explain(
    registry_uri: str, user: str, model: str, groups: tuple[str, ...], as_json: bool
) -> None:
    """What USER may do on MODEL, and which rule grants each permission."""
    client = _client(registry_uri)
    with _errors():
        data = client.explain(user, model, frozenset(groups))
    lines = [f"{user} on model {model} (mode {data['mode']}, policy {data['origin']}):"]
    if data.get("note"):
        lines.append(data["note"])
    lines.append(table(data["permissions"], ("permission", "rule")))
    if data["gates"]:
        lines.append("Gates:")
        lines.append(
            table(
                data["gates"],
                (
                    "gate",
                    "stages",
                    "aliases",
                    "approvals_required",
                    "may_approve",
                    "may_break_glass",
                ),
            )
        )
    emit(data, as_json, text="\n".join(lines))


# ---------------------------------------------------------------------- requests


@click.command("request")
@registry_option
@click.argument("name")
@click.argument("version", type=int)
@click.option("--to", "to", required=True, metavar="STAGE|@ALIAS")
@_comment
@json_option
def request_cmd(
    registry_uri: str, name: str, version: int, to: str, comment: str | None, as_json: bool
) -> None:
    """Open a promotion request moving NAME VERSION to a stage or @alias."""
    client = _client(registry_uri)
    with _errors():
        data = client.request(name, version, to, comment)
    _show_request(data, as_json, lead=f"Request #{data['id']} is {data['state']}.\n")


def _vote_command(name: str, verb: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @registry_option
    @click.argument("request_id", type=int)
    @_comment
    @json_option
    def command(registry_uri: str, request_id: int, comment: str | None, as_json: bool) -> None:
        client = _client(registry_uri)
        with _errors():
            data = getattr(client, verb)(request_id, comment)
        _show_request(data, as_json, lead=f"Request #{request_id} is now {data['state']}.\n")

    return command


approve_cmd = _vote_command(
    "approve",
    "approve",
    "Approve request ID (the last approval applies it when the gate says automatic).",
)
reject_cmd = _vote_command("reject", "reject", "Reject request ID.")
cancel_cmd = _vote_command("cancel", "cancel", "Cancel request ID (its requester or an admin).")


@click.command("requests")
@registry_option
@click.option(
    "--state",
    type=click.Choice(
        ["pending", "approved", "applied", "rejected", "cancelled", "expired", "superseded"]
    ),
)
@click.option("--model", help="Only requests for this model.")
@json_option
def requests_cmd(registry_uri: str, state: str | None, model: str | None, as_json: bool) -> None:
    """List promotion requests, newest first."""
    client = _client(registry_uri)
    with _errors():
        data = client.requests(state=state, model=model)
    emit(data, as_json, text=table(_request_rows(data), _REQUEST_COLUMNS))


@click.command("check")
@registry_option
@click.argument("name")
@click.argument("version", type=int)
@click.option("--gate", required=True, help="The gate whose checks to run.")
@json_option
def check_cmd(registry_uri: str, name: str, version: int, gate: str, as_json: bool) -> None:
    """Evaluate a gate's checks (all but approvals): exit 0 pass, 1 fail, 2 error."""
    from mlflow_governance.client import GovernanceClient

    with _errors(code=2):  # an unreachable registry is an error (2), not a failed check (1)
        data = GovernanceClient(registry_uri).check(name, version, gate)
    verdict = "PASS" if data["passed"] else "FAIL"
    # One line per requirement, as docs/policy.md shows them: what is expected, what the
    # version has, pass or FAIL.
    rows = [{**c, "result": "pass" if c["passed"] else "FAIL"} for c in data["checks"]]
    emit(
        data,
        as_json,
        text=f"{verdict}: {name} version {version} against gate {gate}\n"
        + table(rows, ("name", "expected", "actual", "result")),
    )
    if not data["passed"]:
        sys.exit(1)


@click.command("promote")
@registry_option
@click.argument("name")
@click.argument("version", type=int)
@click.option("--to", "to", required=True, metavar="STAGE|@ALIAS")
@click.option("--wait", is_flag=True, help="Wait until the request is applied or closed.")
@click.option(
    "--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait with --wait."
)
@_comment
@json_option
def promote_cmd(
    registry_uri: str,
    name: str,
    version: int,
    to: str,
    wait: bool,
    timeout: float,
    comment: str | None,
    as_json: bool,
) -> None:
    """Move NAME VERSION to a stage or @alias through its gate (apply, or request and wait)."""
    client = _client(registry_uri)
    with _errors():
        data = client.promote(name, version, to, wait=wait, timeout=timeout, comment=comment)
    request = data.get("request") or {}
    if data["status"] == "applied":
        text = f"{name} version {version} is now at {to}."
    else:
        text = (
            f"{name} version {version} is not at {to} yet: request #{request['id']} is "
            f"{request['state']} ({request.get('needs') or 'waiting'})."
        )
    emit(data, as_json, text=text)
    if data["status"] != "applied":
        sys.exit(3)


@click.command("rollback")
@registry_option
@click.argument("name")
@click.option("--stage", help="Restore the previous holder of this stage.")
@click.option("--alias", help="Restore the previous holder of this alias.")
@_comment
@json_option
def rollback_cmd(
    registry_uri: str,
    name: str,
    stage: str | None,
    alias: str | None,
    comment: str | None,
    as_json: bool,
) -> None:
    """Restore the version that held a stage or alias before, through the gate."""
    if (stage is None) == (alias is None):
        raise click.UsageError("give exactly one of --stage or --alias")
    client = _client(registry_uri)
    with _errors():
        data = client.rollback(name, stage=stage, alias=alias, comment=comment)
    if data["status"] == "applied":
        text = f"Rolled back: {name} {data['target']} is version {data['version']} again."
    else:
        req = data["request"]
        text = (
            f"Rollback of {name} {data['target']} to version {data['version']} requested: "
            f"request #{req['id']} ({req.get('needs')})."
        )
    emit(data, as_json, text=text)


COMMANDS = (
    policy,
    request_cmd,
    approve_cmd,
    reject_cmd,
    cancel_cmd,
    requests_cmd,
    check_cmd,
    promote_cmd,
    rollback_cmd,
)

__all__ = ["COMMANDS", "Path"]
