"""OpenAPI pieces: schema helpers, and the pipeline steps and admin routes (check,
promote, rollback, audit export, verify, reconcile and checkpoint, applying and explaining
the policy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow_governance.inputs import MAX_VERSION


def nullable(kind: str) -> dict[str, Any]:
    """A JSON Schema type that also allows null."""
    return {"type": [kind, "null"]}


def ref(name: str) -> dict[str, str]:
    """A reference to a schema of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    """An object schema whose properties are all required."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": extra,
    }


_VERSION = {"type": ["integer", "string"], "description": f"A version number, 1 to {MAX_VERSION}"}
_REQUEST_OR_NULL = {"anyOf": [ref("Request"), {"type": "null"}]}

STEP_SCHEMAS: dict[str, Any] = {
    "CheckResult": obj(
        {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "gate": {"type": "string"},
            "passed": {"type": "boolean"},
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "passed": {"type": "boolean"},
                        "expected": {},
                        "actual": {},
                    },
                    "required": ["name", "passed", "expected", "actual"],
                },
            },
        }
    ),
    "PromoteBody": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": _VERSION,
            "to": {"type": "string", "examples": ["Production", "@champion"]},
            "comment": nullable("string"),
        },
        "required": ["model", "version", "to"],
    },
    "PromoteResult": obj(
        {
            "status": {
                "type": "string",
                "description": "applied, or the state of the request it opened (pending, ...)",
            },
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "target": {"type": "string"},
            "request": _REQUEST_OR_NULL,
            "review_request": {
                **_REQUEST_OR_NULL,
                "description": "The post-hoc review a break-glass move opened",
            },
        }
    ),
    "RollbackBody": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "stage": nullable("string"),
            "alias": nullable("string"),
            "comment": nullable("string"),
        },
        "required": ["model"],
        "description": "Exactly one of stage and alias.",
    },
    "RollbackResult": obj(
        {
            "status": {"type": "string", "enum": ["applied", "requested"]},
            "model": {"type": "string"},
            "target": {"type": "string"},
            "version": {"type": "integer"},
            "request": _REQUEST_OR_NULL,
            "review_request": _REQUEST_OR_NULL,
        }
    ),
    "VerifyBody": {
        "type": "object",
        "properties": {
            "checkpoint": {
                "type": ["object", "null"],
                "description": "A checkpoint as POST audit/checkpoint returned it",
            }
        },
    },
    "VerifyResult": obj(
        {
            "ok": {"type": "boolean"},
            "rows": {"type": "integer"},
            "head_id": nullable("integer"),
            "head_hash": nullable("string"),
            "broken_id": nullable("integer"),
            "problem": nullable("string"),
        }
    ),
    "ReconcileReport": obj(
        {
            "ok": {"type": "boolean", "description": "True when there is no difference"},
            "rows": {"type": "integer", "description": "Audit rows replayed (refusals are not)"},
            "head_id": {"type": "integer", "description": "The newest audit row read"},
            "models": {"type": "integer"},
            "versions": {"type": "integer"},
            "aliases": {"type": "integer"},
            "differences": {"type": "array", "items": ref("Difference")},
        }
    ),
    "Difference": obj(
        {
            "kind": {
                "type": "string",
                "enum": [
                    "model_not_in_log",
                    "model_missing",
                    "version_not_in_log",
                    "version_missing",
                    "stage_differs",
                    "alias_not_in_log",
                    "alias_missing",
                    "alias_differs",
                ],
            },
            "workspace": {"type": "string"},
            "model": {"type": "string"},
            "version": nullable("integer"),
            "alias": nullable("string"),
            "expected": {"description": "What the log says (null: the log never saw it)"},
            "expected_row": {
                **nullable("integer"),
                "description": "The audit row that set the expected value",
            },
            "actual": {"description": "What the registry holds (null: absent)"},
        }
    ),
    "Checkpoint": {
        "type": "object",
        "properties": {
            "rows": {"type": "integer"},
            "head_id": {"type": "integer"},
            "head_hash": {"type": "string"},
            "time": {"type": "string"},
        },
        "required": ["rows", "head_id", "head_hash", "time"],
    },
    "NewPolicy": {
        "type": "object",
        "properties": {
            "policy": {"type": "string", "description": "The policy file's YAML text"},
            "source": {"type": "string", "description": "The file's name, for the audit row"},
        },
        "required": ["policy", "source"],
    },
    "PolicyApplied": obj(
        {
            "id": {"type": "integer"},
            "sha256": {"type": "string"},
            "changed": {"type": "boolean"},
            "diff": {"type": "string"},
            "overridden_by": {
                **nullable("string"),
                "description": "A policy file this server enforces instead",
            },
        }
    ),
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "event_id": {"type": "string"},
            "type": {"type": "string"},
            "model": nullable("string"),
            "version": nullable("integer"),
            "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "data": {"type": "object"},
        },
        "required": ["id", "event_id", "type", "state", "attempts", "data"],
    },
    "EventList": {"type": "array", "items": ref("Event")},
    "EventRetry": {
        "type": "object",
        "properties": {"event": nullable("integer"), "dead": {"type": "boolean"}},
        "description": "Exactly one of event and dead=true.",
    },
    "Retried": obj({"retried": {"type": "integer"}}),
    "Rendered": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "target": {"type": "string"},
            "request_id": nullable("integer"),
            "approvers": {"type": "array", "items": {"type": "string"}},
            "files": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["model", "version", "target", "files"],
    },
    "PolicyExplanation": {
        "type": "object",
        "properties": {
            "user": {"type": "string"},
            "model": {"type": "string"},
            "mode": {"type": "string"},
            "origin": {"type": "string"},
            "roles": {"type": "array"},
            "permissions": {"type": "array"},
            "gates": {"type": "array"},
        },
        "required": ["user", "model", "mode", "origin", "permissions", "gates"],
    },
}


def _export_responses(declared: dict[str, Any]) -> dict[str, Any]:
    """The export's 200 is JSON, or with ``?format=`` the file's text (CSV or JSON Lines)."""
    declared["200"]["content"].update(
        {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        }
    )
    return declared


def step_paths(
    prefix: str,
    responses: Callable[..., dict[str, Any]],
    query: Callable[..., dict[str, Any]],
    audit_filters: list[dict[str, Any]],
) -> dict[str, Any]:
    """The paths of the steps and admin routes.

    Args:
        prefix: Where the API is mounted.
        responses: Builds a responses object (see ``openapi._responses``).
        query: Builds a query parameter (see ``openapi._query``).
        audit_filters: The audit listing's filter parameters.
    """

    def body(schema: str, required: bool = True) -> dict[str, Any]:
        return {
            "required": required,
            "content": {"application/json": {"schema": ref(schema)}},
        }

    def required(name: str, description: str, kind: str = "string", **bounds: int) -> Any:
        return {**query(name, description, kind, **bounds), "required": True}

    return {
        f"{prefix}/check": {
            "get": {
                "operationId": "checkGate",
                "summary": "A gate's checks on a version (all but approvals; needs read)",
                "parameters": [
                    required("model", "The registered model"),
                    required("version", "The version", "integer", minimum=1, maximum=MAX_VERSION),
                    required("gate", "The gate of the policy"),
                ],
                "responses": responses(
                    "200", "CheckResult", "Each check and the verdict", errors="400,401,403,404"
                ),
            }
        },
        f"{prefix}/promote": {
            "post": {
                "operationId": "promote",
                "summary": "Apply a move through its gate, or open (or reuse) its request; "
                "never waits",
                "requestBody": body("PromoteBody"),
                "responses": responses(
                    "200", "PromoteResult", "Applied, or the open request", errors="400,401,403,404"
                ),
            }
        },
        f"{prefix}/rollback": {
            "post": {
                "operationId": "rollback",
                "summary": "Restore the previous holder of a stage or alias through the gate",
                "requestBody": body("RollbackBody"),
                "responses": responses(
                    "200",
                    "RollbackResult",
                    "Applied, or the rollback request",
                    errors="400,401,403,404,409",
                ),
            }
        },
        f"{prefix}/audit/export": {
            "get": {
                "operationId": "exportAudit",
                "summary": "Every matching audit row, oldest first (needs audit:read); "
                "?format=jsonl|csv gives the file's text instead of JSON",
                "parameters": [
                    *[f for f in audit_filters if f["name"] not in ("limit", "newest_first")],
                    query("format", "jsonl or csv: the export file's text"),
                ],
                "responses": _export_responses(
                    responses("200", "AuditList", "The rows", errors="400,401,403")
                ),
            }
        },
        f"{prefix}/audit/verify": {
            "post": {
                "operationId": "verifyAudit",
                "summary": "Verify the hash chain, against a checkpoint if given "
                "(needs audit:read on every model)",
                "requestBody": body("VerifyBody", required=False),
                "responses": responses(
                    "200", "VerifyResult", "Intact or where broken", errors="400,401,403"
                ),
            }
        },
        f"{prefix}/audit/reconcile": {
            "get": {
                "operationId": "reconcileAudit",
                "summary": "Compare the registry with what the audit log says it should be "
                "(needs audit:read on every model)",
                "responses": responses(
                    "200", "ReconcileReport", "Every difference", errors="401,403,409"
                ),
            }
        },
        f"{prefix}/audit/checkpoint": {
            "post": {
                "operationId": "checkpointAudit",
                "summary": "The chain head to keep outside the database "
                "(needs audit:read on every model)",
                "responses": responses("200", "Checkpoint", "The checkpoint", errors="401,403,409"),
            }
        },
        f"{prefix}/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Outbox events, newest first (needs audit:read on every model)",
                "parameters": [
                    query("state", "pending, delivered or dead"),
                    query("limit", "At most this many (default 100)", "integer", minimum=1),
                ],
                "responses": responses("200", "EventList", "The events", errors="400,401,403"),
            }
        },
        f"{prefix}/events/retry": {
            "post": {
                "operationId": "retryEvents",
                "summary": "Make one event, or every dead one, due again (needs policy:admin)",
                "requestBody": body("EventRetry"),
                "responses": responses(
                    "200", "Retried", "How many are due again", errors="400,401,403,404"
                ),
            }
        },
        f"{prefix}/gitops/render": {
            "get": {
                "operationId": "renderManifests",
                "summary": "Kubernetes manifests of the version a stage or alias holds now "
                "(needs read)",
                "parameters": [
                    required("model", "The registered model"),
                    query("alias", "The alias (or stage)"),
                    query("stage", "The stage (or alias)"),
                    query("image", "The container image to run"),
                ],
                "responses": responses(
                    "200", "Rendered", "The files and what they deploy", errors="400,401,403,404"
                ),
            }
        },
        f"{prefix}/policy/explain": {
            "get": {
                "operationId": "explainPolicy",
                "summary": "What a user may do on a model, and which rule grants it",
                "parameters": [
                    required("user", "The user"),
                    required("model", "The registered model"),
                    query("group", "A group the user's proxy would send (repeatable)"),
                ],
                "responses": responses(
                    "200", "PolicyExplanation", "Permissions and gates", errors="400,401"
                ),
            }
        },
    }
