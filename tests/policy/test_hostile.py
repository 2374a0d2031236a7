"""Hostile policy files: alias bombs, huge or deep documents, values built to overflow.

``policy apply`` and the server take whatever file they are handed, so each of these must
end in a :class:`PolicyFileError` naming the place and the limit, quickly and without
exhausting memory, never in a crash.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlflow_governance.exceptions import PolicyFileError, PolicyIssue
from mlflow_governance.policy import (
    ApprovalFact,
    count_approvals,
    load_policy,
    load_policy_text,
    read_policy_file,
)
from mlflow_governance.policy._budget import MAX_ALIASES, MAX_BYTES, MAX_DEPTH, MAX_VALUES
from mlflow_governance.policy._values import MAX_DURATION, parse_duration

# The classic "billion laughs": nine levels of nine aliases each, 9^9 (387 million)
# strings once expanded. Line 6 holds the first alias whose expansion crosses the budget.
BILLION_LAUGHS = """\
version: 1
groups:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def only_issue(text: str) -> PolicyIssue:
    with pytest.raises(PolicyFileError) as caught:
        load_policy_text(text, source="hostile.yaml")
    (issue,) = caught.value.issues
    return issue


class TestAliasBombs:
    def test_the_billion_laughs_is_refused_at_once_with_the_alias_named(self) -> None:
        started = time.perf_counter()
        issue = only_issue(BILLION_LAUGHS)
        assert time.perf_counter() - started < 0.5
        assert (issue.file, issue.line, issue.column) == ("hostile.yaml", 8, 10)
        assert issue.field == "groups.f[0]"
        assert issue.message == (
            "alias *e stands for 66,430 values, which would expand the document past the "
            f"limit of {MAX_VALUES:,} values (an alias bomb?)"
        )

    def test_a_bomb_hidden_in_a_merge_key_is_refused_too(self) -> None:
        levels = ["version: 1", "x0: &x0 {k: v, l: w, m: u}"]
        for i in range(1, 30):
            levels.append(f"x{i}: &x{i} {{a: *x{i - 1}, b: *x{i - 1}, c: *x{i - 1}}}")
        levels.append("roles: {<<: *x29}")
        issue = only_issue("\n".join(levels) + "\n")
        assert "an alias bomb?" in issue.message
        assert issue.line < 31

    def test_too_many_aliases_are_refused_even_when_each_is_small(self) -> None:
        names = ", ".join(["*u"] * (MAX_ALIASES + 1))
        issue = only_issue(f"version: 1\nx: &u alice\ngroups: {{g: [{names}]}}\n")
        assert issue.line == 3
        assert issue.field == f"groups.g[{MAX_ALIASES}]"
        assert issue.message.endswith(f"a policy may use at most {MAX_ALIASES:,} aliases")

    def test_a_few_aliases_still_work(self) -> None:
        policy = load_policy_text(
            "version: 1\n"
            "groups: {a: &people [alice, bob], b: *people}\n"
            "roles: {r: [read]}\n"
            "bindings: [{role: r, principals: ['group:a'], models: &m [fraud-*]},"
            " {role: r, principals: ['group:b'], models: *m}]\n"
        )
        assert policy.groups["b"] == ("alice", "bob")
        assert policy.bindings[1].models == ("fraud-*",)


class TestSizeAndDepth:
    def test_a_deeply_nested_document_is_refused(self) -> None:
        depth = MAX_DEPTH + 10
        text = "version: 1\nroles:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(depth))
        issue = only_issue(text)
        assert issue.message == f"nested more than {MAX_DEPTH} levels deep; that is the limit"
        assert issue.line == MAX_DEPTH + 2

    def test_deep_flow_nesting_is_refused_without_recursing(self) -> None:
        issue = only_issue("version: 1\nx: " + "[" * 100_000)
        assert issue.line == 2

    def test_an_oversized_text_is_refused_before_parsing(self) -> None:
        started = time.perf_counter()
        issue = only_issue("version: 1\n# " + "x" * MAX_BYTES + "\n")
        assert time.perf_counter() - started < 0.5
        assert (issue.line, issue.field) == (0, "(file)")
        assert issue.message.startswith(f"the policy is {MAX_BYTES + 14:,} bytes; the limit is")

    def test_an_oversized_file_is_read_only_up_to_the_limit(self, tmp_path: Path) -> None:
        path = tmp_path / "huge.yaml"
        path.write_bytes(b"version: 1\n" + b"#" * (3 * MAX_BYTES))
        with pytest.raises(PolicyFileError) as caught:
            load_policy(path)
        (issue,) = caught.value.issues
        assert issue.file == str(path)
        assert issue.message.startswith(f"the policy is {MAX_BYTES + 1:,} bytes; the limit is")

    def test_read_policy_file_gives_the_text_within_the_budget(self, tmp_path: Path) -> None:
        path = tmp_path / "policy.yaml"
        path.write_text("version: 1\n", encoding="utf-8")
        assert read_policy_file(path) == "version: 1\n"
        path.write_bytes(b"#" * (MAX_BYTES + 1))
        with pytest.raises(PolicyFileError, match="the limit is 1,048,576 bytes"):
            read_policy_file(path)

    def test_a_file_that_is_not_utf8_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.yaml"
        path.write_bytes("version: 1\ngroups: {é: [a]}\n".encode("latin-1"))
        with pytest.raises(PolicyFileError) as caught:
            load_policy(path)
        assert caught.value.issues[0].message.startswith("cannot read the policy file: ")


class TestValuesBuiltToCrash:
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("2001-13-45", "cannot read '2001-13-45' as a timestamp: month must be in 1..12"),
            ("1" * 5000, "a whole number of 5,000 characters is too long"),
        ],
    )
    def test_scalars_python_cannot_build_are_reported(self, value: str, message: str) -> None:
        with pytest.raises(PolicyFileError) as caught:
            load_policy_text(
                f"version: 1\ngates: {{g: {{targets: {{stages: [x]}}, apply: {value}}}}}"
            )
        assert any(issue.message == message for issue in caught.value.issues)

    def test_long_values_are_quoted_shortened(self) -> None:
        issue = only_issue("version: 1\nmode: " + "z" * 10_000 + "\n")
        assert len(issue.message) < 200 and "zzz..." in issue.message


class TestBoundedDurations:
    @pytest.mark.parametrize("text", ["99999999999d", "3651d", "521w6d", "1" + "0" * 5000 + "s"])
    def test_durations_beyond_ten_years_are_refused(self, text: str) -> None:
        issue = only_issue(
            "version: 1\ngates:\n  g:\n    targets: {stages: [Staging]}\n"
            f"    approvals: {{required: 0, expire_after: {text}}}\n"
        )
        assert (issue.field, issue.line) == ("gates.g.approvals.expire_after", 5)
        assert issue.message.endswith("is too long: a duration may be at most 3650d (10 years)"), (
            issue.message
        )

    def test_the_bound_itself_is_accepted(self) -> None:
        assert parse_duration("3650d") == MAX_DURATION == timedelta(days=3650)
        assert parse_duration("521w3d") == MAX_DURATION
        assert parse_duration("3650d1s") is None

    def test_the_longest_expiry_leaves_room_for_arithmetic(self) -> None:
        policy = load_policy_text(
            "version: 1\nroles: {approver: ['approve:g']}\n"
            "bindings: [{role: approver, principals: ['user:*']}]\ngates:\n"
            "  g:\n    targets: {stages: [Staging]}\n"
            "    approvals: {required: 1, expire_after: 3650d}\n"
        )
        gate = policy.gates["g"]
        now = datetime.now(timezone.utc)
        assert gate.approvals.expire_after is not None
        assert now - gate.approvals.expire_after < now
        ancient = ApprovalFact("dave", frozenset(), datetime(1, 1, 1))
        report = count_approvals(
            policy, gate, "m", [ancient], requester=None, creator=None, now=now
        )
        assert report.discarded[0][1].startswith("expired: given ")
