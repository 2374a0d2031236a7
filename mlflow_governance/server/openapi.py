"""The OpenAPI 3.1 description of the governance REST API (served as ``openapi.json``).

Schemas are JSON Schema 2020-12 (OpenAPI 3.1), so a client can validate responses with any
JSON Schema library; the suite checks every route's answers against them.
"""

from __future__ import annotations

from typing import Any

from mlflow_governance.inputs import MAX_INT64, MAX_VERSION
from mlflow_governance.server.openapi_steps import STEP_SCHEMAS, nullable, obj, ref, step_paths
from mlflow_governance.workflow.tables import STATES

OPENAPI_VERSION = "3.1.0"


_APPROVAL = obj(
    {
        "approver": {"type": "string"},
        "decision": {"type": "string", "enum": ["approve", "reject"]},
        "comment": nullable("string"),
        "time": {"type": "string", "description": "ISO-8601 UTC"},
    }
)

_REQUEST = obj(
    {
        "id": {"type": "integer"},
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "target": {"type": "string", "description": "A stage (Production) or @alias"},
        "state": {"type": "string", "enum": list(STATES)},
        "requester": {"type": "string"},
        "approvals": {"type": "array", "items": ref("Approval")},
        "rejections": {"type": "array", "items": ref("Approval")},
        "kind": {"type": "string", "enum": ["promotion", "rollback", "review"]},
        "gate": nullable("string"),
        "comment": nullable("string"),
        "archive_existing": {"type": "boolean"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "closed_by": nullable("string"),
        "closed_reason": nullable("string"),
        "applied_at": nullable("string"),
        "applied_by": nullable("string"),
        "needs": {**nullable("string"), "description": "What the gate still needs"},
    },
    extra=True,  # e.g. apply_error when the last approval could not apply the move
)


def _audit_row() -> dict[str, Any]:
    """An audit row as ``audit list --json`` gives it, one property per column of the table."""
    import sqlalchemy as sa

    from mlflow_governance.audit.tables import audit_log

    special: dict[str, Any] = {
        "details": {"type": "object"},
        "decision": {"type": "string", "enum": ["allow", "deny", "would-deny"]},
        "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "time": {"type": "string", "description": "ISO-8601 UTC"},
    }
    properties: dict[str, Any] = {}
    for column in audit_log.columns:
        if column.name in special:
            properties[column.name] = special[column.name]
            continue
        kind = "integer" if isinstance(column.type, sa.Integer) else "string"
        properties[column.name] = nullable(kind) if column.nullable else {"type": kind}
    return obj(properties)


_HISTORY_EVENT = obj(
    {
        "time": {"type": "string"},
        "actor": {"type": "string"},
        "action": {"type": "string"},
        "version": nullable("integer"),
        "kind": {"type": "string", "enum": ["stage", "alias"]},
        "name": {"type": "string"},
        "before": nullable("string"),
        "after": nullable("string"),
        "audit_id": {"type": "integer"},
        "request_id": nullable("integer"),
    }
)

_HOLDING = obj(
    {
        "kind": {"type": "string", "enum": ["stage", "alias"]},
        "name": {"type": "string"},
        "version": {"type": "integer"},
        "since": {"type": "string"},
        "actor": {"type": "string"},
        "audit_id": {"type": "integer"},
        "request_id": nullable("integer"),
    }
)

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "MLflow's REST error format",
        "properties": {
            "error_code": {"type": "string", "examples": ["PERMISSION_DENIED"]},
            "message": {"type": "string"},
            "error_class": {"type": "string"},
            "sqlstate": {"type": "string"},
        },
        "required": ["error_code", "message"],
    },
    "Approval": _APPROVAL,
    "Request": _REQUEST,
    "RequestList": {"type": "array", "items": ref("Request")},
    "NewRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {
                "type": ["integer", "string"],
                "description": f"A version number, 1 to {MAX_VERSION}",
            },
            "target": {"type": "string", "examples": ["Production", "@champion"]},
            "comment": nullable("string"),
        },
        "required": ["model", "version", "target"],
    },
    "Comment": {"type": "object", "properties": {"comment": nullable("string")}},
    "AuditRow": _audit_row(),
    "AuditList": {"type": "array", "items": ref("AuditRow")},
    "HistoryEvent": _HISTORY_EVENT,
    "Holding": _HOLDING,
    "History": {
        "type": "array",
        "items": {"anyOf": [ref("HistoryEvent"), ref("Holding")]},
        "description": "Events oldest first; with ?at=, the holders at that time.",
    },
    "PolicyDocument": obj(
        {
            "origin": {"type": "string", "description": "file:PATH, database:ID or default"},
            "mode": {"type": "string", "enum": ["enforce", "audit-only"]},
            "source": obj(
                {
                    "kind": {"type": "string", "enum": ["file", "applied", "default"]},
                    "path": nullable("string"),
                    "sha256": nullable("string"),
                    "version": nullable("integer"),
                }
            ),
            "policy": {"type": "object"},
        }
    ),
    **STEP_SCHEMAS,
    "RetainBody": {
        "type": "object",
        "properties": {
            "before": {
                "type": "string",
                "description": "ISO-8601 time in the past: rows older than it are cut",
            },
            "archive": {
                "type": "string",
                "description": "A directory on the server, or s3://bucket/prefix",
            },
        },
        "required": ["before", "archive"],
    },
    "RetainResult": obj(
        {
            "rows": {"type": "integer", "description": "Rows archived and cut (0: none)"},
            "first_id": nullable("integer"),
            "last_id": nullable("integer"),
            "last_hash": {**nullable("string"), "description": "The new anchor"},
            "manifest": {**nullable("string"), "description": "Where the manifest went"},
            "jsonl": {**nullable("string"), "description": "Where the rows went"},
            "manifest_sha256": nullable("string"),
            "jsonl_sha256": nullable("string"),
            "head_id": {**nullable("integer"), "description": "The chain head at the cut"},
            "head_hash": nullable("string"),
            "audit_id": nullable("integer"),
        }
    ),
    "WhoAmI": obj(
        {
            "user": {"type": "string"},
            "identity_source": {"type": "string"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "auth": {"type": "string", "enum": ["basic", "trusted-header"]},
            "client_address": nullable("string"),
            "user_agent": nullable("string"),
        }
    ),
}

_ERRORS = {
    "400": "Invalid parameter (INVALID_PARAMETER_VALUE)",
    "401": "Not authenticated (UNAUTHENTICATED)",
    "403": "Refused by the policy or MLflow's workspace permissions (PERMISSION_DENIED), "
    "or an untrusted proxy",
    "404": "No such request (RESOURCE_DOES_NOT_EXIST)",
    "409": "The request is no longer open, you already voted, nothing to roll back to, or "
    "the chain is broken (RESOURCE_CONFLICT, INVALID_STATE)",
    "413": "The request body is above the server's limit, MLFLOW_GOVERNANCE_MAX_BODY_BYTES "
    "(INVALID_PARAMETER_VALUE); nothing was read or changed",
    "500": "An unexpected server error (INTERNAL_ERROR); the server's log has the details",
}


def _responses(ok: str, schema: str, description: str, *, errors: str = "401") -> dict[str, Any]:
    out: dict[str, Any] = {
        ok: {
            "description": description,
            "content": {"application/json": {"schema": ref(schema)}},
        }
    }
    for code in [*errors.split(","), "500"]:
        out[code] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return out


def _query(name: str, description: str, kind: str = "string", **bounds: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind, **bounds},
    }


_REQUEST_ID = {
    "name": "request_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT64},
}


def _vote(action: str, summary: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"{action}Request",
            "summary": summary,
            "parameters": [_REQUEST_ID],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": ref("Comment")}},
            },
            "responses": _responses(
                "200", "Request", "The request after the action", errors="400,401,403,404,409"
            ),
        }
    }


def build_spec(prefix: str, auth_mode: str) -> dict[str, Any]:
    """The OpenAPI document for routes under ``prefix``.

    Args:
        prefix: Where the API is mounted, e.g. ``/api/2.0/mlflow-governance``.
        auth_mode: ``basic`` or ``trusted-header`` (which security scheme applies).
    """
    scheme = "basicAuth" if auth_mode == "basic" else "trustedProxy"
    audit_filters = [
        _query("model", "Only rows about this registered model"),
        _query(
            "version", "Only rows about this version", "integer", minimum=1, maximum=MAX_VERSION
        ),
        _query("actor", "Only rows by this user"),
        _query("workspace", "Only rows of this MLflow workspace"),
        _query("action", "Only this action, e.g. transition_model_version_stage"),
        _query("decision", "allow, deny or would-deny"),
        _query("since", "From this ISO-8601 time (UTC)"),
        _query("until", "Up to this ISO-8601 time (UTC)"),
        _query("limit", "At most this many rows (default 100, max 5000)", "integer", minimum=1),
        _query("newest_first", "true for newest rows first", "boolean"),
    ]
    paths: dict[str, Any] = {
        f"{prefix}/requests": {
            "get": {
                "operationId": "listRequests",
                "summary": "Promotion requests on models you may read, newest first",
                "parameters": [
                    _query("state", "pending, approved, applied, rejected, cancelled, ..."),
                    _query("model", "Only requests about this registered model"),
                ],
                "responses": _responses("200", "RequestList", "The requests", errors="400,401"),
            },
            "post": {
                "operationId": "createRequest",
                "summary": "Open (or reuse) a promotion request",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("NewRequest")}},
                },
                "responses": _responses(
                    "201", "Request", "The open request", errors="400,401,403,404"
                ),
            },
        },
        f"{prefix}/requests/{{request_id}}": {
            "get": {
                "operationId": "getRequest",
                "summary": "One request with its approvals and what its gate still needs",
                "parameters": [_REQUEST_ID],
                "responses": _responses("200", "Request", "The request", errors="400,401,403,404"),
            }
        },
        f"{prefix}/requests/{{request_id}}/approve": _vote(
            "approve", "Approve (the last approval applies an automatic gate)"
        ),
        f"{prefix}/requests/{{request_id}}/reject": _vote("reject", "Reject (closes it)"),
        f"{prefix}/requests/{{request_id}}/cancel": _vote(
            "cancel", "Cancel (the requester or a policy admin)"
        ),
        f"{prefix}/audit": {
            "get": {
                "operationId": "listAudit",
                "summary": "Audit rows (needs audit:read)",
                "parameters": audit_filters,
                "responses": _responses("200", "AuditList", "The rows", errors="400,401,403"),
            }
        },
        f"{prefix}/history": {
            "get": {
                "operationId": "getHistory",
                "summary": "Stage and alias history of a model (needs audit:read)",
                "parameters": [
                    {**_query("model", "The registered model"), "required": True},
                    _query("at", "Show the holders at this ISO-8601 time instead"),
                ],
                "responses": _responses(
                    "200", "History", "Events or holders", errors="400,401,403"
                ),
            }
        },
        f"{prefix}/policy": {
            "get": {
                "operationId": "getPolicy",
                "summary": "The policy in force and where it comes from",
                "responses": _responses("200", "PolicyDocument", "The policy"),
            },
            "post": {
                "operationId": "applyPolicy",
                "summary": "Validate and apply a policy (needs policy:admin)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("NewPolicy")}},
                },
                "responses": _responses(
                    "200", "PolicyApplied", "Applied, or unchanged", errors="400,401,403"
                ),
            },
        },
        **step_paths(prefix, _responses, _query, audit_filters),
        f"{prefix}/audit/retain": {
            "post": {
                "operationId": "retainAudit",
                "summary": "Archive the audit rows older than a time (with a manifest, read "
                "back), then cut them; the chain stays verifiable from its anchor "
                "(needs policy:admin)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("RetainBody")}},
                },
                "responses": _responses(
                    "200", "RetainResult", "Archived and cut", errors="400,401,403,409"
                ),
            }
        },
        f"{prefix}/whoami": {
            "get": {
                "operationId": "whoami",
                "summary": "Who the server authenticated you as",
                "responses": _responses("200", "WhoAmI", "The caller"),
            }
        },
        f"{prefix}/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "401": _responses("200", "Error", "")["401"],
                    "500": _responses("200", "Error", "")["500"],
                },
            }
        },
    }
    _declare_body_limit(paths)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "mlflow-governance",
            "version": _version(),
            "description": "Promotion requests, approvals, the audit log and the policy of a "
            "governed MLflow model registry. Errors use MLflow's format.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "trustedProxy": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Forwarded-User",
                    "description": "Set by an authenticating proxy listed in "
                    "MLFLOW_GOVERNANCE_TRUSTED_PROXIES",
                },
            },
        },
        "security": [{scheme: []}],
    }


def _declare_body_limit(paths: dict[str, Any]) -> None:
    """Every operation that reads a body may answer 413 (see ``_http.limit_body``)."""
    for item in paths.values():
        for operation in item.values():
            if "requestBody" in operation:
                operation["responses"]["413"] = {
                    "description": _ERRORS["413"],
                    "content": {"application/json": {"schema": ref("Error")}},
                }


def _version() -> str:
    from mlflow_governance import __version__

    return __version__
