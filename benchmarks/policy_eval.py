"""How long one policy decision takes on a large policy.

Generates a policy of 50 roles, 200 bindings and 20 gates as YAML text, loads it through
the real loader (so the indexes built at load time are the ones measured), then times
``authorize`` and ``gates_for`` one call at a time and prints the median in microseconds.
Every governed registry write makes at least one such decision, so the bar is a median
under 50 µs; the script exits with status 1 above it.

Run: ``.venv/bin/python benchmarks/policy_eval.py [--calls N] [--seed S]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

import yaml

from mlflow_governance.policy import Policy, Subject, authorize, gates_for, load_policy_text

BAR_MICROSECONDS = 50.0
STAGES = ("None", "Staging", "Production", "Archived")
SIMPLE = ("read", "register", "edit", "delete", "request", "audit:read")
TEAMS = tuple(f"team{i}" for i in range(25))


def generate_policy_text(rng: random.Random) -> str:
    """A policy of 40 groups, 50 roles, 200 bindings and 20 gates, as YAML."""
    users = [f"user{i}" for i in range(400)]
    groups = {f"group{i}": rng.sample(users, 8) for i in range(40)}
    gates = [f"gate{i}" for i in range(20)]
    roles: dict[str, list[str]] = {}
    for i in range(50):
        permissions = rng.sample(SIMPLE, rng.randint(1, 4))
        permissions += [f"transition:{s}" for s in rng.sample(STAGES, rng.randint(0, 2))]
        permissions += [f"alias:{rng.choice(['champion', 'challenger', 'shadow-*', 'eu-?'])}"]
        if i < 20:
            permissions.append(f"approve:{gates[i]}")
        roles[f"role{i}"] = permissions
    roles["role49"] = ["*"]
    bindings = []
    for i in range(200):
        principals = [f"group:group{rng.randrange(40)}"]
        principals += [f"user:{u}" for u in rng.sample(users, rng.randint(0, 2))]
        models = rng.choice([["*"], [f"{rng.choice(TEAMS)}-*"], [f"{rng.choice(TEAMS)}-model?"]])
        bindings.append({"role": f"role{i % 50}", "principals": principals, "models": models})
    gate_specs = {}
    for i, name in enumerate(gates):
        gate_specs[name] = {
            "targets": {
                "stages": [STAGES[1 + i % 2]],
                "aliases": [rng.choice(["champion", "prod-*", f"{name}-*"])],
            },
            "models": [f"{TEAMS[i]}-*", f"{TEAMS[(i + 1) % len(TEAMS)]}-*"],
            "approvals": {
                "required": 2,
                "approver_roles": [f"role{i}"],
                "distinct_from": ["requester", "version_creator"],
                "expire_after": "72h",
            },
            "checks": {"metrics": {"accuracy": ">= 0.9"}, "signature_required": True},
        }
    document = {
        "version": 1,
        "mode": "enforce",
        "groups": groups,
        "roles": roles,
        "bindings": bindings,
        "gates": gate_specs,
    }
    return yaml.safe_dump(document, sort_keys=False)


def median_microseconds(calls: list[Callable[[], object]]) -> tuple[float, float]:
    """Median and 95th percentile of single calls, in microseconds."""
    for call in calls[:200]:  # Warm up caches of the interpreter, not of the engine.
        call()
    samples = []
    clock = time.perf_counter_ns
    for call in calls:
        start = clock()
        call()
        samples.append(clock() - start)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.95)] / 1000


def main() -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000, help="decisions to time")
    parser.add_argument("--seed", type=int, default=7, help="random seed for the policy")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    text = generate_policy_text(rng)
    started = time.perf_counter()
    policy: Policy = load_policy_text(text, source="<benchmark>")
    load_ms = (time.perf_counter() - started) * 1000
    print(
        f"policy: {len(policy.roles)} roles, {len(policy.bindings)} bindings, "
        f"{len(policy.gates)} gates, {len(text.splitlines())} lines; loaded in {load_ms:.1f} ms"
    )

    permissions = [*SIMPLE, "transition:Staging", "transition:production", "alias:champion"]
    permissions += ["alias:eu-1", "approve:gate3", "policy:admin", "no-such-permission"]
    subjects = [Subject(f"user{i}") for i in range(0, 400, 3)]
    subjects += [Subject(f"outsider{i}", frozenset({f"group{i}"})) for i in range(40)]
    models = [f"{team}-{suffix}" for team in TEAMS for suffix in ("model1", "fraud", "x")]
    models.append("unrelated")

    queries = [
        (rng.choice(subjects), rng.choice(permissions), rng.choice(models))
        for _ in range(args.calls)
    ]
    allowed = sum(authorize(policy, s, p, m).allowed for s, p, m in queries)
    authorize_calls: list[Callable[[], object]] = [
        (lambda s=s, p=p, m=m: authorize(policy, s, p, m)) for s, p, m in queries
    ]
    auth_median, auth_p95 = median_microseconds(authorize_calls)
    print(
        f"authorize: median {auth_median:.2f} µs, p95 {auth_p95:.2f} µs over {args.calls} "
        f"calls ({allowed * 100 // args.calls}% allowed)"
    )

    targets = [{"stage": "Production"}, {"stage": "staging"}, {"alias": "champion"}]
    targets += [{"alias": "prod-eu"}, {"alias": "nothing"}]
    gate_calls: list[Callable[[], object]] = []
    for _ in range(args.calls):
        model, target = rng.choice(models), rng.choice(targets)
        gate_calls.append(lambda model=model, target=target: gates_for(policy, model, **target))
    gate_median, gate_p95 = median_microseconds(gate_calls)
    print(f"gates_for: median {gate_median:.2f} µs, p95 {gate_p95:.2f} µs over {args.calls} calls")

    worst = max(auth_median, gate_median)
    verdict = "OK" if worst < BAR_MICROSECONDS else "TOO SLOW"
    print(f"median per decision: {worst:.2f} µs (bar: {BAR_MICROSECONDS:.0f} µs) {verdict}")
    return 0 if worst < BAR_MICROSECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
