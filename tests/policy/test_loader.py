"""Loading policy files: what a valid file becomes, and how every invalid one is refused.

Each file under ``examples/policies/invalid/`` holds one kind of mistake; the tests pin
the line and field path of every issue the loader reports for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlflow_governance.exceptions import PolicyFileError
from mlflow_governance.policy import (
    Notification,
    Policy,
    default_policy,
    load_policy,
    load_policy_text,
    policy_to_dict,
)
from tests.policy._support import EXAMPLES, INVALID, issues_of, lines


class TestValidFiles:
    def test_team(self, team: Policy) -> None:
        assert team.mode == "enforce"
        assert dict(team.groups) == {
            "data-science": ("alice", "bob"),
            "ml-engineers": ("carol", "frank"),
            "release-managers": ("dave", "erin"),
            "ops": ("oscar",),
        }
        assert list(team.roles) == ["viewer", "contributor", "promoter", "approver", "admin"]
        assert team.roles["promoter"].permissions == (
            "read",
            "request",
            "transition:Staging",
            "alias:challenger",
        )
        assert team.bindings[0].principals == ("group:data-science", "user:svc-ci")
        assert team.bindings[1].models == ("*",)
        assert team.protect_delete == ("Production", "champion")
        assert team.source.endswith("team.yaml")

    def test_open(self, open_policy: Policy) -> None:
        assert open_policy.mode == "audit-only"
        assert not open_policy.enforcing

    def test_strict_notifications(self, strict: Policy) -> None:
        webhook, local, sqs, sns, bridge = strict.notifications
        assert webhook == Notification(
            type="webhook",
            url="https://ci.example.com/hooks/model-registry",
            secret_env="GOV_HOOK_SECRET",
            events=("promotion.*", "alias.*"),
        )
        assert webhook.wants("promotion.applied") and webhook.wants("alias.set")
        assert not webhook.wants("access.denied")
        assert local.allow_insecure and local.wants("access.denied")
        assert sqs.queue_url is not None and sqs.queue_url.endswith("/model-events")
        assert sns.topic_arn == "arn:aws:sns:eu-west-1:123456789012:model-events"
        assert (bridge.bus, bridge.source) == ("default", "mlflow.governance")

    def test_eventbridge_fields_have_defaults(self) -> None:
        policy = load_policy_text("version: 1\nnotifications: [{type: eventbridge}]\n")
        assert (policy.notifications[0].bus, policy.notifications[0].source) == (
            "default",
            "mlflow.governance",
        )

    def test_mode_defaults_to_enforce(self) -> None:
        assert load_policy_text("version: 1").mode == "enforce"

    def test_permissions_are_canonicalised_and_deduplicated(self) -> None:
        policy = load_policy_text(
            "version: 1\nroles: {r: [read, 'transition:production', read, 'transition:STAGING']}"
        )
        assert policy.roles["r"].permissions == (
            "read",
            "transition:Production",
            "transition:Staging",
        )

    def test_yaml_anchors_and_merge_keys_work(self) -> None:
        text = """
version: 1
gates:
  a:
    targets: {stages: [Staging]}
    approvals: &four-eyes {required: 0, expire_after: 1h30m}
  b:
    targets: {stages: [Production]}
    approvals:
      <<: *four-eyes
      expire_after: 2d
"""
        loaded = load_policy_text(text)
        assert loaded.gates["a"].approvals.expire_after is not None
        assert loaded.gates["a"].approvals.expire_after.total_seconds() == 5400
        assert loaded.gates["b"].approvals.expire_after is not None
        assert loaded.gates["b"].approvals.expire_after.days == 2

    def test_a_key_named_like_a_yaml_boolean_stays_a_name(self) -> None:
        policy = load_policy_text("version: 1\ngroups: {on: [alice], no: [bob]}\n")
        assert list(policy.groups) == ["on", "no"]

    def test_load_policy_accepts_str_and_pathlike(self) -> None:
        assert load_policy(str(EXAMPLES / "team.yaml")) == load_policy(EXAMPLES / "team.yaml")


class TestRoundTrip:
    @pytest.mark.parametrize("name", ["open", "team", "strict", "platform"])
    def test_policy_to_dict_round_trips_through_yaml(self, name: str) -> None:
        policy = load_policy(EXAMPLES / f"{name}.yaml")
        again = load_policy_text(yaml.safe_dump(policy_to_dict(policy)))
        assert again == policy
        assert policy_to_dict(again) == policy_to_dict(policy)

    def test_the_default_policy_round_trips(self) -> None:
        policy = default_policy()
        assert load_policy_text(yaml.safe_dump(policy_to_dict(policy))) == policy

    def test_the_dict_spells_out_every_default(self, team: Policy) -> None:
        data = policy_to_dict(team)
        assert data["bindings"][1] == {
            "role": "promoter",
            "principals": ["group:ml-engineers"],
            "models": ["*"],
            "workspaces": ["*"],
        }
        assert data["gates"]["production"]["approvals"] == {
            "required": 2,
            "approver_roles": ["approver"],
            "distinct_from": ["requester", "version_creator"],
            "expire_after": "3d",
        }
        assert data["gates"]["production"]["checks"] == {
            "metrics": {},
            "tags": {"validation_status": "passed"},
            "signature_required": False,
        }

    def test_metric_thresholds_keep_their_value(self, strict: Policy) -> None:
        metrics = policy_to_dict(strict)["gates"]["production"]["checks"]["metrics"]
        assert metrics == {"accuracy": ">= 0.95", "auc": "> 0.9", "latency_ms": "< 200"}

    def test_policies_are_hashable_values(self, team: Policy) -> None:
        assert hash(team) == hash(load_policy(EXAMPLES / "team.yaml"))


class TestInvalidFiles:
    def test_every_invalid_example_is_refused(self) -> None:
        for path in sorted(INVALID.glob("*.yaml")):
            with pytest.raises(PolicyFileError):
                load_policy(path)

    def test_an_empty_file(self) -> None:
        (issue,) = issues_of("empty")
        assert issue.field == "(file)"
        assert issue.message == "the policy file is empty; a policy needs at least 'version: 1'"
        assert issue.file.endswith("empty.yaml")

    def test_a_top_level_that_is_not_a_mapping(self) -> None:
        (issue,) = issues_of("not_a_mapping")
        assert (issue.line, issue.message) == (
            2,
            "expected a mapping of policy settings, got a list",
        )

    def test_a_yaml_syntax_error(self) -> None:
        (issue,) = issues_of("syntax_error")
        assert (issue.field, issue.line) == ("(syntax)", 4)
        # The wording comes from libyaml or PyYAML, whichever parsed the file.
        assert issue.message.startswith("not valid YAML: ")
        assert "expected ',' or ']'" in issue.message

    def test_unknown_keys_at_every_level_name_the_valid_ones(self) -> None:
        issues = issues_of("unknown_keys")
        assert lines(issues) == {
            "rolse": 2,
            "gates.production.targets.alias": 6,
            "gates.production.approval": 7,
            "bindings[0].role": 10,  # the role is unknown because `roles` was misspelt
            "bindings[0].model": 12,
        }
        rolse = issues[0]
        assert rolse.message == "unknown key 'rolse'; did you mean 'roles'?"
        assert "roles" in rolse.valid and "gates" in rolse.valid
        assert (rolse.line, rolse.column) == (2, 1)
        assert issues[2].valid[:3] == ("targets", "from_stages", "approvals")

    def test_wrong_types(self) -> None:
        issues = issues_of("wrong_types")
        assert lines(issues) == {
            "groups.data-science": 3,
            "roles.viewer": 5,
            "bindings[0].principals": 8,
            "gates.production.approvals.required": 13,
            "gates.production.archive_existing": 14,
        }
        assert issues[0].message == "expected a list of user names, got the text 'alice'"
        assert issues[3].message == "expected a whole number, got the text 'two'"
        assert issues[4].valid == ("true", "false")

    def test_version_must_be_1_and_mode_enforce_or_audit_only(self) -> None:
        version, mode = issues_of("bad_version_and_mode")
        assert (version.line, version.column, version.valid) == (1, 10, ("1",))
        assert version.message == "unsupported version 2"
        assert (mode.line, mode.valid) == (2, ("enforce", "audit-only"))
        assert mode.message == "unknown mode 'strict'"

    def test_version_is_required(self) -> None:
        (issue,) = issues_of("missing_version")
        assert issue.message == "missing required key 'version', e.g. version: 1"

    def test_unknown_roles_and_gates_are_named_with_the_defined_ones(self) -> None:
        issues = issues_of("unknown_references")
        assert lines(issues) == {
            "roles.approver[1]": 4,
            "bindings[0].role": 6,
            "gates.production.approvals.approver_roles[0]": 13,
            "gates.production.break_glass_roles[0]": 14,
        }
        gate, role, approver, glass = issues
        assert gate.message == "'approve:staging' names gate 'staging', which is not defined"
        assert gate.valid == ("approve:production",)
        assert role.message == "unknown role 'reviewer'"
        assert role.valid == ("viewer", "approver")
        assert approver.message == "unknown role 'approvers'"
        assert glass.message == "unknown role 'root'"

    def test_permissions_outside_the_vocabulary(self) -> None:
        issues = issues_of("bad_permissions")
        assert lines(issues) == {
            "roles.deployer[1]": 3,
            "roles.promoter[0]": 4,
            "roles.aliaser[0]": 5,
            "roles.shouter[0]": 6,
        }
        deploy, stage, alias, shout = issues
        assert deploy.message == "unknown permission 'deploy'"
        assert "transition:Production" in deploy.valid and "approve:<gate>" in deploy.valid
        assert stage.message == "unknown stage 'Prod' in 'transition:Prod'"
        assert stage.valid == ("None", "Staging", "Production", "Archived", "*")
        assert alias.message.startswith("bad alias glob in 'alias:champ[ion': unbalanced '['")
        assert shout.message == "unknown permission 'READ'"

    def test_bad_globs(self) -> None:
        issues = issues_of("bad_globs")
        assert lines(issues) == {
            "bindings[0].models[0]": 7,
            "gates.production.targets.aliases[0]": 10,
            "gates.production.models[0]": 11,
        }
        assert issues[0].message == "bad glob: unbalanced '[' at position 7 in 'fraud-[ab'"

    def test_bad_metric_expressions_say_the_valid_form(self) -> None:
        issues = issues_of("bad_metrics")
        assert lines(issues) == {
            "gates.production.checks.metrics.accuracy": 7,
            "gates.production.checks.metrics.latency_ms": 8,
            "gates.production.checks.metrics.auc": 9,
            "gates.production.checks.tags.approved": 11,
        }
        assert issues[0].message == (
            "the text 'at least 0.9' is not a metric condition; write an operator "
            "(>=, >, <=, <, ==, !=) and a number, e.g. '>= 0.95'"
        )
        assert issues[3].message.endswith("; quote it")

    def test_bad_durations(self) -> None:
        words, zero = issues_of("bad_durations")
        assert (words.field, words.line) == ("gates.production.approvals.expire_after", 7)
        assert "e.g. 90s, 30m, 72h, 7d" in words.message
        assert (zero.field, zero.line) == ("gates.staging.approvals.expire_after", 12)

    def test_duplicate_keys_are_caught_in_every_mapping(self) -> None:
        issues = issues_of("duplicate_keys")
        assert [(i.field, i.line, i.message) for i in issues] == [
            (
                "groups.ops",
                4,
                "duplicate group 'ops' (first at line 3); "
                "YAML would silently keep only the last one",
            ),
            (
                "roles.viewer",
                7,
                "duplicate role 'viewer' (first at line 6); "
                "YAML would silently keep only the last one",
            ),
            (
                "gates.production.approvals.required",
                13,
                "duplicate key 'required' (first at line 12); "
                "YAML would silently keep only the last one",
            ),
            (
                "gates.production",
                14,
                "duplicate gate 'production' (first at line 9); "
                "YAML would silently keep only the last one",
            ),
        ]

    def test_negative_counts(self) -> None:
        issues = issues_of("negative_required")
        assert lines(issues) == {
            "gates.production.approvals.required": 6,
            "gates.production.rollback_approvals": 7,
        }
        assert issues[0].message == "must be at least 0, got -1"

    def test_an_approval_count_nobody_could_reach(self) -> None:
        (issue,) = issues_of("unsatisfiable")
        assert (issue.field, issue.line) == ("gates.production.approvals.required", 16)
        assert issue.message == (
            "needs 3 approvals but only 2 distinct user(s) hold role approver: dave, erin; "
            "bind the approver role to more people or lower the count"
        )

    def test_bad_notifications(self) -> None:
        issues = issues_of("bad_notifications")
        assert lines(issues) == {
            "notifications[0].type": 3,
            "notifications[1].url": 6,
            "notifications[2]": 7,
            "notifications[3].secret_env": 11,
            "notifications[3].events[0]": 12,
            "notifications[3].queue_url": 13,
            "notifications[4].topic_arn": 15,
        }
        kind, insecure, missing, secret, events, stray, arn = issues
        assert kind.valid == ("webhook", "sqs", "sns", "eventbridge", "slack")
        assert insecure.message.startswith("an http:// webhook sends events")
        assert "allow_insecure: true" in insecure.message
        assert missing.message == "missing required key 'queue_url', e.g. queue_url: ..."
        assert "not an environment variable name" in secret.message
        assert events.message == "'promotion.aproved' matches no event type"
        assert "promotion.approved" in events.valid
        assert stray.valid == ("type", "url", "secret_env", "events", "models", "allow_insecure")
        assert arn.message.startswith("'sns:model-events' is not an SNS topic ARN")

    def test_protect_delete_takes_stages_and_aliases(self) -> None:
        issues = issues_of("bad_protect_delete")
        assert [(i.field, i.line, i.column) for i in issues] == [
            ("protect_delete[1]", 2, 30),
            ("protect_delete[2]", 2, 38),
            ("protect_delete[3]", 2, 50),
        ]
        assert "'latest' is reserved" in issues[0].message
        assert issues[0].valid == ("None", "Staging", "Production", "Archived", "<alias>")

    def test_bad_targets_stages_and_gate_names(self) -> None:
        issues = issues_of("bad_targets")
        assert lines(issues) == {
            "gates.production.targets.stages[0]": 4,
            "gates.production.from_stages[0]": 5,
            "gates.production.apply": 6,
            "gates.production.approvals.distinct_from[1]": 9,
            "gates.bad gate!": 10,
            "gates.bad gate!.targets.aliases[0]": 11,
            "gates.nothing.targets": 13,
        }
        assert issues[2].valid == ("automatic", "manual")
        assert issues[3].valid == ("requester", "version_creator")
        assert issues[6].message == "a gate needs at least one target stage or alias"

    def test_bad_principals(self) -> None:
        issues = issues_of("bad_principals")
        assert lines(issues) == {
            "groups.ops[0]": 3,
            "bindings[0].principals[0]": 8,
            "bindings[0].principals[1]": 8,
            "bindings[0].principals[2]": 8,
            "bindings[1].principals": 10,
            "bindings[2]": 11,
        }
        assert issues[1].valid == ("user:NAME", "group:NAME", "user:*")

    def test_the_error_message_lists_every_issue_with_its_position(self) -> None:
        with pytest.raises(PolicyFileError) as caught:
            load_policy(INVALID / "bad_version_and_mode.yaml")
        text = str(caught.value)
        assert text.startswith("Invalid policy: 2 problems:\n")
        assert "bad_version_and_mode.yaml:1:10: version: unsupported version 2 (valid: 1)" in text
        assert "bad_version_and_mode.yaml:2:7: mode: unknown mode 'strict'" in text

    def test_issues_are_sorted_in_file_order(self) -> None:
        issues = issues_of("unknown_keys")
        assert [i.line for i in issues] == sorted(i.line for i in issues)

    def test_text_is_named_by_its_source(self) -> None:
        with pytest.raises(PolicyFileError) as caught:
            load_policy_text("version: 3", source="inline.yaml")
        assert caught.value.issues[0].file == "inline.yaml"
        with pytest.raises(PolicyFileError) as caught:
            load_policy_text("version: 3")
        assert caught.value.issues[0].file == "<string>"

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(PolicyFileError) as caught:
            load_policy(tmp_path / "nope.yaml")
        (issue,) = caught.value.issues
        assert issue.message == "cannot read the policy file: No such file or directory"

    def test_a_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.yaml"
        path.write_bytes(b"version: 1\n# caf\xe9\n")
        with pytest.raises(PolicyFileError) as caught:
            load_policy(path)
        assert caught.value.issues[0].message.startswith("cannot read the policy file")


class TestSatisfiability:
    """A count is only checked when every eligible approver is a named user."""

    def check(self, bindings: str, required: int = 2) -> None:
        load_policy_text(
            f"""
version: 1
groups: {{leads: [ann]}}
roles: {{approver: [read]}}
bindings:
{bindings}
gates:
  production:
    targets: {{stages: [Production]}}
    approvals: {{required: {required}, approver_roles: [approver]}}
"""
        )

    def test_users_named_directly_and_through_groups_are_counted(self) -> None:
        self.check('  - {role: approver, principals: ["group:leads", "user:bob"]}')
        with pytest.raises(PolicyFileError):
            self.check('  - {role: approver, principals: ["group:leads", "user:ann"]}')

    def test_an_undefined_group_is_unbounded(self) -> None:
        self.check('  - {role: approver, principals: ["group:from-the-header"]}', required=5)

    def test_everyone_is_unbounded(self) -> None:
        self.check('  - {role: approver, principals: ["user:*"]}', required=5)

    def test_no_approver_at_all(self) -> None:
        with pytest.raises(PolicyFileError) as caught:
            self.check("  []", required=1)
        assert "only 0 distinct user(s) hold role approver: nobody" in str(caught.value)

    def test_a_rollback_count_is_checked_too(self) -> None:
        with pytest.raises(PolicyFileError) as caught:
            load_policy_text(
                """
version: 1
roles: {approver: [read]}
bindings: [{role: approver, principals: ["user:a"]}]
gates:
  production:
    targets: {stages: [Production]}
    approvals: {required: 1, approver_roles: [approver]}
    rollback_approvals: 2
"""
            )
        assert caught.value.issues[0].field == "gates.production.rollback_approvals"
