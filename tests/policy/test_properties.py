"""Properties that must hold for any input, checked with generated data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlflow_governance.exceptions import PolicyFileError
from mlflow_governance.policy import (
    PERMISSION_FORMS,
    STAGES,
    Policy,
    Subject,
    authorize,
    load_policy_text,
    parse_permission,
    policy_to_dict,
)
from mlflow_governance.policy._budget import MAX_VALUES
from mlflow_governance.policy._values import format_duration, parse_duration

# libyaml's emitter, when present, keeps the generated round trips quick.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(data: object) -> str:
    return yaml.dump(data, Dumper=_DUMPER)


EVERYTHING = load_policy_text(
    "version: 1\nroles: {root: ['*']}\nbindings: [{role: root, principals: ['user:root']}]\n"
)
AUDIT_ONLY = load_policy_text("version: 1\nmode: audit-only\n")

# Small fixed pools keep generation fast; the engine treats every name alike anyway.
names = st.sampled_from(["alice", "bob", "ops", "ml-eng", "prod", "a1", "x.y", "z_9"])
alias_names = st.sampled_from(["champion", "challenger", "prod", "shadow_1", "eu-west"])
stage_spellings = st.sampled_from(STAGES).flatmap(
    lambda s: st.sampled_from([s, s.lower(), s.upper()])
)
valid_permissions = st.one_of(
    st.sampled_from([p for p in PERMISSION_FORMS if "<" not in p]),
    stage_spellings.map(lambda s: f"transition:{s}"),
    alias_names.map(lambda a: f"alias:{a}"),
    names.map(lambda g: f"approve:{g}"),
)
model_names = st.one_of(st.none(), st.text(min_size=1, max_size=30))


@given(permission=st.text(max_size=40), model=model_names, user=st.text(max_size=10))
def test_random_permission_strings_never_crash_authorize(
    permission: str, model: str | None, user: str
) -> None:
    for policy in (EVERYTHING, AUDIT_ONLY):
        decision = authorize(policy, Subject(user), permission, model)
        assert decision.effect in ("allow", "deny", "would-deny")
        if parse_permission(permission) is None:
            assert not decision.granted


@given(permission=valid_permissions, model=model_names)
def test_star_grants_every_permission_on_every_model(permission: str, model: str | None) -> None:
    assert authorize(EVERYTHING, Subject("root"), permission, model).granted


@given(permission=valid_permissions, model=model_names, user=names)
def test_without_a_binding_nothing_is_granted(
    permission: str, model: str | None, user: str
) -> None:
    assert authorize(EVERYTHING, Subject(f"x{user}"), permission, model).refused


@given(permission=valid_permissions, model=model_names, user=names)
def test_audit_only_never_refuses(permission: str, model: str | None, user: str) -> None:
    decision = authorize(AUDIT_ONLY, Subject(user), permission, model)
    assert decision.allowed and not decision.refused


@given(seconds=st.integers(min_value=1, max_value=10**8))
def test_durations_print_in_a_form_they_parse_from(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


conditions = st.tuples(
    st.sampled_from([">=", ">", "<=", "<", "==", "!="]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
).map(lambda t: f"{t[0]} {t[1]!r}")
# The short form, or the long one with provenance requirements.
metric_entries = st.one_of(
    conditions,
    st.fixed_dictionaries(
        {"condition": conditions},
        optional={"logged_before_request": st.booleans(), "not_by_requester": st.booleans()},
    ),
)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """Valid policy files: groups, roles, bindings and gates that refer to each other."""
    groups = draw(st.dictionaries(names, st.lists(names, max_size=3, unique=True), max_size=3))
    gate_names = draw(st.lists(names, max_size=3, unique=True))
    permission = st.one_of(
        valid_permissions.filter(lambda p: not p.startswith("approve:")),
        *([st.sampled_from(gate_names).map(lambda g: f"approve:{g}")] if gate_names else []),
    )
    roles = draw(st.dictionaries(names, st.lists(permission, max_size=4), min_size=1, max_size=4))
    principal = st.one_of(
        st.just("user:*"),
        names.map(lambda u: f"user:{u}"),
        names.map(lambda g: f"group:{g}"),
    )
    bindings = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(sorted(roles)),
                    "principals": st.lists(principal, min_size=1, max_size=3),
                },
                optional={
                    "models": st.lists(st.sampled_from(["*", "fraud-*", "m?"]), min_size=1),
                    "workspaces": st.lists(
                        st.sampled_from(["*", "default", "team-a", "ml-*"]), min_size=1
                    ),
                },
            ),
            max_size=4,
        )
    )
    gates = {}
    for name in gate_names:
        gates[name] = {
            "targets": {
                "stages": draw(st.lists(stage_spellings, min_size=1, max_size=2)),
                "aliases": draw(st.lists(alias_names, max_size=2)),
            },
            "approvals": {
                "required": 0,
                "distinct_from": draw(
                    st.lists(st.sampled_from(["requester", "version_creator"]), unique=True)
                ),
                "expire_after": draw(st.sampled_from([None, "90s", "1h30m", "7d"])),
            },
            "checks": {
                "metrics": draw(st.dictionaries(names, metric_entries, max_size=2)),
                "tags": draw(
                    st.dictionaries(
                        names,
                        st.one_of(
                            names,
                            st.fixed_dictionaries(
                                {
                                    "value": names,
                                    "set_by": st.lists(
                                        st.sampled_from(sorted(roles)), min_size=1, max_size=2
                                    ),
                                }
                            ),
                        ),
                        max_size=2,
                    )
                ),
                "signature_required": draw(st.booleans()),
            },
            "apply": draw(st.sampled_from(["automatic", "manual"])),
        }
    return {
        "version": 1,
        "mode": draw(st.sampled_from(["enforce", "audit-only"])),
        "groups": groups,
        "roles": roles,
        "bindings": bindings,
        "gates": gates,
        "protect_delete": draw(st.lists(st.one_of(stage_spellings, alias_names), max_size=3)),
    }


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=60)
@given(data=policies())
def test_any_valid_policy_round_trips_through_policy_to_dict(data: dict[str, Any]) -> None:
    policy = load_policy_text(dump(data))
    assert isinstance(policy, Policy)
    assert load_policy_text(dump(policy_to_dict(policy))) == policy


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["version", "mode", "roles", "gates", "bindings", "targets", "x"]),
            children,
            max_size=3,
        ),
    ),
    max_leaves=12,
)


@settings(deadline=None)
@given(text=st.one_of(st.text(max_size=60), yaml_values.map(dump)))
def test_the_loader_only_ever_raises_policy_file_error(text: str) -> None:
    try:
        load_policy_text(text)
    except PolicyFileError as error:
        assert error.issues
        assert all(issue.message for issue in error.issues)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=60)
@given(
    data=policies(),
    user=names,
    permission=valid_permissions,
    workspace=st.sampled_from([None, "default", "team-a", "ml-x", "other"]),
)
def test_a_grant_comes_from_a_binding_applying_in_the_workspace(
    data: dict[str, Any], user: str, permission: str, workspace: str | None
) -> None:
    policy = load_policy_text(dump(data))
    decision = authorize(policy, Subject(user, workspace=workspace), permission, "fraud-x")
    if decision.granted:
        index = int(decision.rule.split("[", 1)[1].split("]", 1)[0])
        assert policy.bindings[index].workspace_globs.match(workspace or "default")


@settings(deadline=None, max_examples=30)
@given(width=st.integers(min_value=2, max_value=12), depth=st.integers(min_value=2, max_value=12))
def test_alias_bombs_of_any_shape_are_refused_by_the_budget(width: int, depth: int) -> None:
    lines = ["version: 1", "groups:", f"  l0: &l0 [{', '.join(['x'] * width)}]"]
    sizes = [1 + width]  # values each level's list stands for once expanded
    for level in range(1, depth):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
        sizes.append(1 + width * sizes[-1])
    with pytest.raises(PolicyFileError) as caught:
        # Small shapes are refused too: a group lists user names, not lists.
        load_policy_text("\n".join(lines) + "\n")
    budget = [i for i in caught.value.issues if f"{MAX_VALUES:,} values" in i.message]
    # The root, `version: 1`, the `groups` key and mapping, then each level's key and list.
    expanded = 5 + depth + sum(sizes)
    # Refused by the budget exactly when the expansion would pass it; never expanded first.
    assert bool(budget) is (expanded > MAX_VALUES)
