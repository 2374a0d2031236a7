"""The policy engine: the policy file as data, its loader, and pure decisions over it.

Nothing in this package imports MLflow or Flask or touches the network or a database; the
only I/O is reading the file handed to :func:`load_policy`. The store, the CLI and the
server call these functions and turn their answers into refusals, requests and audit rows.

Example:
    >>> from mlflow_governance.policy import Subject, authorize, load_policy_text
    >>> policy = load_policy_text('''
    ... version: 1
    ... mode: enforce
    ... roles: {reader: [read]}
    ... bindings: [{role: reader, principals: ["user:*"]}]
    ... ''')
    >>> authorize(policy, Subject("alice"), "read", "fraud-detector").allowed
    True
    >>> authorize(policy, Subject("alice"), "delete", "fraud-detector").refused
    True
"""

from __future__ import annotations

from mlflow_governance.policy.checks import (
    evaluate_checks,
    tag_move_decision,
    tag_write_decision,
)
from mlflow_governance.policy.decisions import (
    ApprovalFact,
    CheckResult,
    Decision,
    GateReport,
    Grant,
    MetricOrigin,
    Subject,
    VersionFacts,
)
from mlflow_governance.policy.evaluator import (
    authorize,
    count_approvals,
    describe_approvals,
    effective_groups,
    gates_for,
    may_approve,
    may_break_glass,
    model_globs_granting,
    permissions_of,
    protected_by,
    roles_of,
)
from mlflow_governance.policy.loader import load_policy, load_policy_text, read_policy_file
from mlflow_governance.policy.model import (
    DEFAULT_WORKSPACE,
    EVENT_TYPES,
    Approvals,
    Binding,
    Checks,
    Gate,
    MetricCondition,
    MetricProvenance,
    Notification,
    Policy,
    Role,
    Targets,
    default_policy,
)
from mlflow_governance.policy.permissions import (
    PERMISSION_FORMS,
    STAGES,
    Permission,
    canonical_stage,
    parse_permission,
)
from mlflow_governance.policy.serialize import policy_to_dict

__all__ = [
    "DEFAULT_WORKSPACE",
    "EVENT_TYPES",
    "PERMISSION_FORMS",
    "STAGES",
    "ApprovalFact",
    "Approvals",
    "Binding",
    "CheckResult",
    "Checks",
    "Decision",
    "Gate",
    "GateReport",
    "Grant",
    "MetricCondition",
    "MetricOrigin",
    "MetricProvenance",
    "Notification",
    "Permission",
    "Policy",
    "Role",
    "Subject",
    "Targets",
    "VersionFacts",
    "authorize",
    "canonical_stage",
    "count_approvals",
    "default_policy",
    "describe_approvals",
    "effective_groups",
    "evaluate_checks",
    "gates_for",
    "load_policy",
    "load_policy_text",
    "may_approve",
    "may_break_glass",
    "model_globs_granting",
    "parse_permission",
    "permissions_of",
    "policy_to_dict",
    "protected_by",
    "read_policy_file",
    "roles_of",
    "tag_move_decision",
    "tag_write_decision",
]
