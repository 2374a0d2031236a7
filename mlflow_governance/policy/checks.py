"""What a version must show before a gate lets it through, and who may write what it shows.

A gate's tag check is only as good as the tag: anyone with ``edit`` can set
``validation_status: passed``. :func:`tag_write_decision` closes that for tags whose gate
entry names trusted writers (``set_by``): the store asks it on every version tag write,
tag deletion and tag given at version creation, and :func:`tag_move_decision` when a
rename carries tags under another name. A metric check likewise proves only that
the run holds the number now; the provenance requirements of
:func:`evaluate_checks` also ask when it was logged and by whom.
"""

from __future__ import annotations

from datetime import datetime, timezone

from mlflow_governance.policy._index import TagWriters, fold_tag_key
from mlflow_governance.policy._scope import (
    ANONYMOUS,
    anonymous_hint,
    effective_groups,
    held_roles,
    list_phrase,
    not_granted,
    where,
    who,
)
from mlflow_governance.policy.decisions import (
    CheckResult,
    Decision,
    MetricOrigin,
    Subject,
    VersionFacts,
    aware,
)
from mlflow_governance.policy.model import Gate, MetricProvenance, Policy, format_number
from mlflow_governance.policy.permissions import canonical_stage

__all__ = ["evaluate_checks", "tag_move_decision", "tag_write_decision"]


def evaluate_checks(
    gate: Gate,
    facts: VersionFacts,
    *,
    request_time: datetime | None = None,
    requester: str | None = None,
) -> tuple[CheckResult, ...]:
    """Run the gate's checks against a version.

    Args:
        gate: The gate.
        facts: What the version shows now.
        request_time: When the move was asked for (the request's creation). ``None`` for a
            move made directly, without a request: the move is asked for now.
        requester: Who asks for the move: the request's requester, or the actor of a
            direct move. ``None`` leaves nobody to compare a metric's logger with, so a
            ``not_by_requester`` check fails rather than passes.

    Returns:
        One result per requirement, in this order: ``from_stages`` (if set); for each
        metric ``metric <name>``, then ``metric <name> logged_before_request`` and
        ``metric <name> not_by_requester`` when the gate asks for them; each tag;
        ``signature`` (if required). A missing metric or tag fails with actual
        ``missing``.
    """
    results: list[CheckResult] = []
    if gate.from_stages:
        current = canonical_stage(facts.current_stage) or facts.current_stage
        results.append(
            CheckResult(
                name="from_stages",
                passed=current in gate.from_stages,
                expected="stage " + " or ".join(gate.from_stages),
                actual=current,
            )
        )
    provenance = gate.checks.metric_provenance
    for name, condition in gate.checks.metrics.items():
        raw = facts.metrics.get(name)
        if raw is None:
            results.append(CheckResult(f"metric {name}", False, str(condition), "missing"))
        else:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                results.append(CheckResult(f"metric {name}", False, str(condition), repr(raw)))
            else:
                results.append(
                    CheckResult(
                        f"metric {name}",
                        condition.holds(value),
                        str(condition),
                        format_number(value),
                    )
                )
        wanted = provenance.get(name)
        if wanted is not None:
            origin = facts.metric_origins.get(name) if raw is not None else None
            results.extend(_provenance(name, wanted, origin, raw is None, request_time, requester))
    for name, expected in gate.checks.tags.items():
        actual = facts.tags.get(name)
        results.append(
            CheckResult(
                f"tag {name}",
                actual == expected,
                expected,
                "missing" if actual is None else actual,
            )
        )
    if gate.checks.signature_required:
        present = "present" if facts.has_signature else "missing"
        results.append(CheckResult("signature", facts.has_signature, "present", present))
    return tuple(results)


def _provenance(
    name: str,
    wanted: MetricProvenance,
    origin: MetricOrigin | None,
    missing: bool,
    request_time: datetime | None,
    requester: str | None,
) -> list[CheckResult]:
    results = []
    if wanted.logged_before_request:
        if request_time is None:
            # A direct move is asked for now: anything logged earlier was logged before it.
            moment, asked = datetime.now(timezone.utc), "now"
        else:
            moment = aware(request_time)
            asked = f"the request ({format_time(moment)})"
        expected = f"logged before {asked}"
        logged = origin.logged_at if origin is not None else None
        if missing:
            passed, actual = False, "missing"
        elif logged is None:
            passed, actual = False, "logging time unknown"
        else:
            when = aware(logged)
            passed = when < moment
            if passed:
                actual = f"logged {format_time(when)}"
            elif when == moment:
                actual = f"logged {format_time(when)}, the moment of {asked}"
            else:
                actual = f"logged {format_time(when)}, after {asked}"
        results.append(
            CheckResult(f"metric {name} logged_before_request", passed, expected, actual)
        )
    if wanted.not_by_requester:
        logger = origin.logged_by if origin is not None else None
        if requester is None:
            expected = "logged by someone other than the requester (requester unknown)"
        else:
            expected = f"logged by someone other than the requester ({requester})"
        if missing:
            passed, actual = False, "missing"
        elif logger is None:
            passed, actual = False, "logged by an unknown user"
        elif requester is None:
            passed, actual = False, f"logged by {logger}; no requester to compare with"
        elif logger == requester:
            passed, actual = False, f"logged by {logger}, the requester"
        else:
            passed, actual = True, f"logged by {logger}"
        results.append(CheckResult(f"metric {name} not_by_requester", passed, expected, actual))
    return results


def format_time(moment: datetime) -> str:
    """``2026-11-27T10:00:00Z``, with milliseconds when the time has them (MLflow's grain)."""
    utc = aware(moment).astimezone(timezone.utc)
    spec = "seconds" if utc.microsecond == 0 else "milliseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def tag_write_decision(policy: Policy, subject: Subject, model: str, key: str) -> Decision | None:
    """Whether ``subject`` may set, change or delete version tag ``key`` on ``model``.

    Only tags some gate restricts with ``set_by`` are decided here (the ``edit``
    permission every tag write needs is :func:`~mlflow_governance.policy.authorize`'s
    business). A gate restricts the key when it covers the model and its ``checks.tags``
    names trusted writers for the key; keys are compared as loosely as a case- and
    accent-insensitive database would (``Validation_Status`` is restricted like
    ``validation_status``).

    Args:
        policy: The policy.
        subject: Who writes, and in which workspace.
        model: The registered model whose version carries the tag.
        key: The tag key written or deleted.

    Returns:
        ``None`` when no gate covering ``model`` restricts ``key``. Otherwise a granted
        decision when the subject holds, through a binding covering the model, one of the
        ``set_by`` roles of every restricting gate; else a refusal: ``deny`` with rule
        ``gates.<gate>.checks.tags.<key>.set_by``, or in audit-only mode ``would-deny``
        with rule ``mode audit-only`` (the reason names the gate either way).
    """
    restricting = policy.index.tag_writers.get(fold_tag_key(key))
    if not restricting:
        return None
    applicable = [w for w in restricting if w.gate.model_globs.match(model)]
    if not applicable:
        return None
    held = held_roles(policy, subject, model)
    place = where(policy, subject)
    granting: dict[str, str] = {}  # role -> the binding granting it, for the record
    for writers in applicable:
        role = next((role for role in held if role in writers.roles), None)
        if role is None:
            return _refuse_tag(policy, subject, model, key, writers, place)
        granting[role] = held[role]
    gates = ", ".join(dict.fromkeys(w.gate.name for w in applicable))
    roles = ", ".join(granting)
    return Decision(
        allowed=True,
        effect="allow",
        rule=", ".join(dict.fromkeys(granting.values())),
        reason=f"{subject.user} holds role {roles} on model '{model}'{place}, trusted by "
        f"gate {gates} to set tag '{key}'",
    )


def tag_move_decision(
    policy: Policy, subject: Subject, model: str, new_model: str, key: str
) -> Decision | None:
    """Whether version tag ``key`` may come along when ``model`` becomes ``new_model``.

    Renaming a registered model carries its versions' tags to the new name, where other
    gates may restrict them: a tag set freely on an ungated ``sandbox-x`` would otherwise
    arrive already "passed" in a gated ``fraud-x``. A tag every gate restricting it under
    the new name also restricted under the old one was written by someone those gates
    trusted; any other restricted tag must be vouched for by the subject, as if written
    now.

    Args:
        policy: The policy.
        subject: Who renames, and in which workspace.
        model: The model's name now.
        new_model: The name it is getting.
        key: A tag key carried by one of its versions.

    Returns:
        ``None`` when the move needs no decision; else :func:`tag_write_decision` for
        ``new_model``.
    """
    restricting = policy.index.tag_writers.get(fold_tag_key(key))
    if not restricting:
        return None
    before = {id(w) for w in restricting if w.gate.model_globs.match(model)}
    if all(id(w) in before for w in restricting if w.gate.model_globs.match(new_model)):
        return None
    return tag_write_decision(policy, subject, new_model, key)


def _refuse_tag(
    policy: Policy,
    subject: Subject,
    model: str,
    key: str,
    writers: TagWriters,
    place: str,
) -> Decision:
    trusted = list_phrase("role", sorted(writers.roles))
    same = "" if writers.key == key else f" (the same tag as '{writers.key}' to the database)"
    groups = effective_groups(policy, subject)
    return not_granted(
        policy,
        rule=f"gates.{writers.gate.name}.checks.tags.{writers.key}.set_by",
        reason=f"{who(subject.user, groups)} holds none of {trusted} on model '{model}'"
        f"{place}; gate {writers.gate.name} accepts tag '{key}'{same} only from them",
        hint=anonymous_hint(f"{trusted} on model '{model}'{place}")
        if subject.user == ANONYMOUS
        else f"Ask for {trusted} on model '{model}'{place}, or let a holder of it write the tag.",
    )
