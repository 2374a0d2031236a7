"""docs/cli.md, run: every ``$ mlflow-governance …`` line of its console examples, checked.

How the examples run
--------------------
Each ```console block of docs/cli.md is a short shell transcript. Its ``$`` lines run in
order, in a fresh folder that holds ``mlflow.db`` (a copy of the registry :func:`seed`
builds) and a copy of ``examples/policies/``:

* ``export NAME=VALUE …`` and ``unset NAME …`` change variables for the rest of the
  block, and ``NAME=VALUE`` before a command sets them for that command only;
* ``mlflow-governance …`` runs in this process, through click's ``CliRunner`` and
  :func:`mlflow_governance.cli.main`; what it writes (standard output and error, in the
  order written) is compared with the lines under it (see :func:`match_output`);
* ``echo $?`` checks the exit code of the command before it. A command whose code the
  document does not state this way must exit 0.

Anything else on a ``$`` line fails the test, so no example goes unrun.

A block starts where the document tells its reader to start: ``MLFLOW_TRACKING_URI`` is
the governance server ``https://mlflow.example.com`` (:data:`SERVER`) and the user is
``admin``. No server runs here. That URL is a placeholder, answered in this process by
:class:`Loopback`: the application service a governance server runs, on the folder's
database, acting as the user the server would authenticate (identity source ``server``)
and marked remote, so the CLI prints what it prints for a server. That the real HTTP
transport gives the same JSON and exit codes as local mode is shown against a real
``mlflow server --app-name governance`` by ``tests/access/test_transports.py``; starting
one here would cost more than this whole module. Another ``http://127.0.0.1:5000`` URL
(:data:`UNREACHABLE`) goes to the real transport, on a port where nothing listens.
Local-mode examples name ``--registry-uri governed+sqlite:///mlflow.db``: the folder's
own database.

An HTML comment ``<!-- setup: NAME -->`` just before a block runs ``SETUPS[NAME]`` first:
tampering with the audit log, or approvers who approve while ``promote --wait`` waits.
``promote --wait`` runs on a fake clock: each pause between polls moves the clock on
instead of sleeping.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from mlflow.exceptions import MlflowException

import mlflow_governance.access as access_module
from mlflow_governance.access import LocalAccess, resolve_uri
from mlflow_governance.access import waiting as waiting_module
from mlflow_governance.cli import main
from mlflow_governance.identity import SOURCE_SERVER, Identity, acting_as
from tests.tamper import tamper

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"
POLICIES = ROOT / "examples" / "policies"
MODEL = "fraud-detector"

#: The governance server the examples talk to (answered by :class:`Loopback`).
SERVER = "https://mlflow.example.com"
#: A server URL of the examples where nothing answers (a free local port is used).
UNREACHABLE = "http://127.0.0.1:5000"
#: Where every block starts, as the document says.
START_ENV: dict[str, str | None] = {
    "MLFLOW_TRACKING_URI": SERVER,
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": None,
    "MLFLOW_TRACKING_TOKEN": None,
    "MLFLOW_REGISTRY_URI": None,
    "MLFLOW_GOVERNANCE_POLICY": None,
    # The unreachable example fails at once instead of after MLflow's retries.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
}


# ---------------------------------------------------------------------- parsing


@dataclass
class Command:
    """One ``$`` line of an example and the output documented under it."""

    text: str
    lineno: int
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    """One ```console block."""

    lineno: int
    setup: str | None
    commands: list[Command]

    @property
    def name(self) -> str:
        first = self.commands[0].text if self.commands else ""
        return f"line{self.lineno}-{first[:40]}"


_SETUP = re.compile(r"<!--\s*setup:\s*(\S+)\s*-->")


def parse_blocks(text: str) -> list[Block]:
    """The ```console blocks of a Markdown text, with their commands and outputs."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```console":
            index += 1
            continue
        before = [line for line in lines[:index] if line.strip()]
        found = _SETUP.fullmatch(before[-1].strip()) if before else None
        block = Block(index + 1, found.group(1) if found else None, [])
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            if line.startswith("$ "):
                command = Command(line[2:], index + 1)
                while command.text.endswith("\\") and index + 1 < len(lines):
                    index += 1
                    command.text = command.text[:-1].rstrip() + " " + lines[index].strip()
                block.commands.append(command)
            elif block.commands:
                block.commands[-1].output.append(line.rstrip())
            elif line.strip():
                raise AssertionError(f"docs/cli.md:{index + 1}: output before any command")
            index += 1
        for command in block.commands:
            while command.output and not command.output[-1]:
                command.output.pop()
        blocks.append(block)
        index += 1
    return blocks


# ---------------------------------------------------------------------- comparing

_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_HASH = re.compile(r"\b[0-9a-f]{7,64}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_HEADER = re.compile(r"[A-Z][A-Z_]*(?: {2,}[A-Z][A-Z_]*)+")
_SHELL_OPERATORS = frozenset({"|", ">", ">>", "<", "&&", "||", ";", "&"})
ELISION = "..."
WILDCARD = "…"


def normalise(line: str) -> str:
    """A line with times, hashes and numbers (ids, counts, ports) as placeholders."""
    line = _TIME.sub("<TIME>", line)
    line = _HASH.sub("<HASH>", line)
    line = _NUMBER.sub("<N>", line)
    return " ".join(line.split())


def _line_pattern(documented: str) -> re.Pattern[str]:
    parts = normalise(documented).split(WILDCARD)
    return re.compile(".*".join(re.escape(part) for part in parts))


def _columns(header: str) -> list[int]:
    return [match.start() for match in re.finditer(r"\S+", header)]


def _is_row(line: str, columns: Sequence[int]) -> bool:
    """Whether a line is laid out as a row of the table whose columns start there."""
    if not line.strip() or len(line) <= columns[-1]:
        return False
    return all(line[at] != " " and (at == 0 or line[at - 1] == " ") for at in columns)


@dataclass(frozen=True)
class Line:
    """A documented line: the actual one must match it once normalised."""

    text: str


@dataclass(frozen=True)
class Table:
    """A documented table: the same header; rows compared as far as both go."""

    header: str
    rows: tuple[str, ...]


@dataclass(frozen=True)
class Elision:
    """A documented ``...`` line: any number of actual lines."""


Item = Line | Table | Elision


def documented_items(lines: Sequence[str]) -> list[Item]:
    """Split documented output into lines, tables and elisions."""
    items: list[Item] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == ELISION:
            items.append(Elision())
        elif _HEADER.fullmatch(line.strip()) and not line.startswith(" "):
            columns = _columns(line)
            rows = []
            while index + 1 < len(lines) and _is_row(lines[index + 1], columns):
                index += 1
                rows.append(lines[index])
            items.append(Table(line, tuple(rows)))
        else:
            items.append(Line(line))
        index += 1
    return items


def match_output(documented: Sequence[str], actual: Sequence[str]) -> str | None:
    """Compare an example's documented output with what the command printed.

    Both are normalised (:func:`normalise`). Each documented line matches one actual line
    (``…`` inside a documented line matches any text); a documented ``...`` line matches
    any number of lines; a documented table matches a table with the same header whose
    rows are compared one by one as far as both go (a table may be longer or shorter than
    the documented one: the story behind it may differ).

    Returns:
        None when they match, else what differs first.
    """
    items = documented_items(documented)
    problems: list[str] = []

    def walk(item_index: int, line_index: int) -> bool:
        if item_index == len(items):
            if line_index == len(actual):
                return True
            problems.append(f"unexpected output line {actual[line_index]!r}")
            return False
        item = items[item_index]
        if isinstance(item, Elision):
            return any(walk(item_index + 1, skip) for skip in range(line_index, len(actual) + 1))
        if line_index == len(actual):
            problems.append(f"missing output line {_show(item)!r}")
            return False
        line = actual[line_index]
        if isinstance(item, Line):
            if not _line_pattern(item.text).fullmatch(normalise(line)):
                problems.append(f"expected {item.text!r}, got {line!r}")
                return False
            return walk(item_index + 1, line_index + 1)
        if normalise(item.header) != normalise(line):
            problems.append(f"expected table header {item.header!r}, got {line!r}")
            return False
        columns = _columns(line)
        end = line_index + 1
        while end < len(actual) and _is_row(actual[end], columns):
            end += 1
        for row, got in zip(item.rows, actual[line_index + 1 : end], strict=False):
            if not _line_pattern(row).fullmatch(normalise(got)):
                problems.append(f"expected table row {row!r}, got {got!r}")
                return False
        return walk(item_index + 1, end)

    return None if walk(0, 0) else problems[-1]


def _show(item: Item) -> str:
    return item.text if isinstance(item, Line) else getattr(item, "header", ELISION)


def time_pairs(documented: Sequence[str], actual: Sequence[str]) -> dict[str, str]:
    """Documented times and the actual times printed at the same places.

    A later command of the block that quotes a documented time (``history --at T``) is
    run with the actual one.
    """
    pairs: dict[str, str] = {}
    for doc_line, got in zip(documented, actual, strict=False):
        doc_times, got_times = _TIME.findall(doc_line), _TIME.findall(got)
        if len(doc_times) == len(got_times):
            pairs.update(zip(doc_times, got_times, strict=True))
    return pairs


# ---------------------------------------------------------------------- the seeded story


def _service(uri: str) -> Any:
    from mlflow_governance.application import GovernanceService
    from mlflow_governance.entry import build_store

    return GovernanceService(build_store(uri))


def _as(user: str) -> Identity:
    return Identity(user, SOURCE_SERVER)


def seed(uri: str) -> None:
    """The team story of examples/policies/team.yaml, as a governance server records it.

    admin applies the policy (#1); alice registers fraud-detector versions 1 to 3, each
    tagged ``validation_status: passed``; carol stages version 1 and has it promoted to
    Production (request 1) and @champion (request 2), dave and erin approving; the same
    for version 2 (requests 3 and 4: version 1 is archived); carol stages version 3 and
    asks for Production (request 5), which dave has approved and which waits for a
    second approver; mallory, who holds no role, is refused a tag.
    """
    service = _service(uri)
    store = service.store
    service.policy_apply(
        _as("admin"), (POLICIES / "team.yaml").read_text(), "examples/policies/team.yaml"
    )
    with acting_as(_as("alice")):
        store.create_registered_model(MODEL)
        for number in (1, 2, 3):
            store.create_model_version(
                MODEL,
                f"s3://models/{MODEL}/{number}",
                tags=[ModelVersionTag("validation_status", "passed")],
            )
    for number in (1, 2):
        with acting_as(_as("carol")):
            store.transition_model_version_stage(MODEL, number, "Staging", False)
        for target in ("Production", "@champion"):
            request = service.open_request(_as("carol"), MODEL, number, target, "validated")
            service.vote(_as("dave"), request["id"], "approve", "looks good")
            service.vote(_as("erin"), request["id"], "approve", None)
    with acting_as(_as("carol")):
        store.transition_model_version_stage(MODEL, 3, "Staging", False)
    request = service.open_request(_as("carol"), MODEL, 3, "Production", "nightly retrain")
    service.vote(_as("dave"), request["id"], "approve", "metrics reviewed")
    with acting_as(_as("mallory")), pytest.raises(MlflowException):
        store.set_registered_model_tag(MODEL, RegisteredModelTag("owner", "mallory"))
    store.engine.dispose()


def _forget_engines(match: Callable[[str], bool]) -> None:
    """Dispose of MLflow's cached engines whose URL ``match`` accepts."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    for url in [url for url in SqlAlchemyStore._engine_map if match(url)]:
        SqlAlchemyStore._engine_map.pop(url).dispose()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Path:
    """The seeded registry database, built once for the module."""
    path = tmp_path_factory.mktemp("seeded") / "mlflow.db"
    shutil.copy(_sqlite_template, path)
    saved = {name: os.environ.pop(name, None) for name in START_ENV}
    try:
        seed(f"governed+sqlite:///{path}")
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        _forget_engines(lambda url: str(path) in url)
    return path


# ---------------------------------------------------------------------- running


class Loopback(LocalAccess):
    """The governance server of the examples, answered in this process (module docstring)."""

    remote = True

    def __init__(self, registry_uri: str, user: str) -> None:
        super().__init__(registry_uri, _as(user))

    @property
    def where(self) -> str:
        return SERVER

    def notice(self) -> str | None:
        return None  # a server's own settings are not this process's to warn about

    def whoami(self) -> Any:
        return {**super().whoami(), "server": SERVER}


class FakeClock:
    """The clock and the pause of ``promote --wait``; ``on_pause`` runs at each pause."""

    def __init__(self) -> None:
        self.now = 0.0
        self.on_pause: Callable[[float], None] = lambda now: None

    def clock(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds
        self.on_pause(self.now)


@dataclass
class Folder:
    """Where a block runs: the database, the policies, the fake clock."""

    path: Path
    clock: FakeClock

    @property
    def uri(self) -> str:
        return f"governed+sqlite:///{self.path / 'mlflow.db'}"


def _pending_request(uri: str, version: int, target: str) -> int:
    requests = _service(uri).list_requests(_as("admin"), "pending", MODEL)
    return next(r["id"] for r in requests if r["version"] == version and r["target"] == target)


def _erin_approves_while_waiting(folder: Folder) -> None:
    request_id = _pending_request(folder.uri, 3, "Production")
    approved: list[bool] = []

    def approve(now: float) -> None:
        if now >= 14 and not approved:
            _service(folder.uri).vote(_as("erin"), request_id, "approve", None)
            approved.append(True)

    folder.clock.on_pause = approve


def _audit_sql(folder: Folder, statement: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{folder.path / 'mlflow.db'}")
    tamper(engine, statement)
    engine.dispose()


def _edit_row_4(folder: Folder) -> None:
    from mlflow_governance.audit.tables import audit_log

    _audit_sql(folder, sa.update(audit_log).where(audit_log.c.id == 4).values(actor="dave"))


def _delete_row_5(folder: Folder) -> None:
    from mlflow_governance.audit.tables import audit_log

    _audit_sql(folder, sa.delete(audit_log).where(audit_log.c.id == 5))


#: What ``<!-- setup: NAME -->`` before a block does first.
SETUPS: dict[str, Callable[[Folder], None]] = {
    "erin-approves-while-waiting": _erin_approves_while_waiting,
    "row-4-edited": _edit_row_4,
    "row-5-deleted": _delete_row_5,
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    """A command as run: its arguments, its result, its documented output."""

    command: Command
    result: Result
    stated_exit: bool = False


class Shell:
    """Runs the ``$`` lines of one block (module docstring)."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.env: dict[str, str | None] = dict(START_ENV)
        self.times: dict[str, str] = {}
        self.unreachable = f"http://127.0.0.1:{_free_port()}"
        self.runs: list[Run] = []

    def connect(
        self,
        registry_uri: str | None = None,
        tracking_uri: str | None = None,
        identity: Identity | None = None,
    ) -> Any:
        """``mlflow_governance.access.connect``, with :data:`SERVER` answered in-process."""
        if resolve_uri(registry_uri, tracking_uri).rstrip("/") == SERVER:
            return Loopback(self.folder.uri, os.environ.get("MLFLOW_TRACKING_USERNAME") or "")
        return REAL_CONNECT(registry_uri, tracking_uri, identity)

    def run(self, command: Command) -> None:
        words = shlex.split(command.text, comments=True)
        assignments = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            assignments[name] = value
        where = f"docs/cli.md:{command.lineno}: {command.text}"
        assert not _SHELL_OPERATORS.intersection(words), f"{where}: pipes and redirections"
        if words and words[0] == "export" and not assignments:
            for word in words[1:]:
                name, equals, value = word.partition("=")
                assert equals, f"{where}: export NAME=VALUE expected"
                self.env[name] = self._substitute(value)
            assert not command.output, f"{where}: export prints nothing"
        elif words and words[0] == "unset" and not assignments:
            for name in words[1:]:
                self.env[name] = None
        elif words == ["echo", "$?"] and not assignments:
            assert self.runs, f"{where}: no command before"
            last = self.runs[-1]
            assert command.output and command.output[0].isdigit(), f"{where}: the code?"
            assert last.result.exit_code == int(command.output[0]), (
                f"docs/cli.md:{last.command.lineno}: {last.command.text}: exit code "
                f"{last.result.exit_code}, documented {command.output[0]}\n{last.result.output}"
            )
            last.stated_exit = True
        elif words and words[0] == "mlflow-governance":
            self._run_cli(command, words[1:], assignments)
        else:
            raise AssertionError(f"{where}: not a command this test can run")

    def _substitute(self, word: str) -> str:
        for documented, actual in self.times.items():
            word = word.replace(documented, actual)
        return word.replace(UNREACHABLE, self.unreachable)

    def _run_cli(self, command: Command, args: list[str], assignments: dict[str, str]) -> None:
        env = {**self.env, **{k: self._substitute(v) for k, v in assignments.items()}}
        result = CliRunner().invoke(
            main,
            [self._substitute(arg) for arg in args],
            env=env,
            prog_name="mlflow-governance",
            catch_exceptions=False,
        )
        actual = result.output.rstrip("\n").splitlines() if result.output.strip() else []
        actual = [line.rstrip() for line in actual]
        problem = match_output(command.output, actual)
        assert problem is None, (
            f"docs/cli.md:{command.lineno}: $ {command.text}\n{problem}\n"
            f"--- documented\n" + "\n".join(command.output) + "\n--- actual\n" + result.output
        )
        self.times.update(time_pairs(command.output, actual))
        self.runs.append(Run(command, result))

    def check_exit_codes(self) -> None:
        for run in self.runs:
            assert run.stated_exit or run.result.exit_code == 0, (
                f"docs/cli.md:{run.command.lineno}: $ {run.command.text}: exit code "
                f"{run.result.exit_code}, but the example does not say so (add 'echo $?')\n"
                + run.result.output
            )


REAL_CONNECT = access_module.connect
BLOCKS = parse_blocks(DOC.read_text(encoding="utf-8"))


@pytest.fixture
def folder(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Folder]:
    """A fresh folder with the seeded database and the example policies, as working dir."""
    shutil.copy(seeded, tmp_path / "mlflow.db")
    shutil.copytree(POLICIES, tmp_path / "examples" / "policies")
    monkeypatch.chdir(tmp_path)
    clock = FakeClock()
    defaults = dict(waiting_module.wait_for_promotion.__kwdefaults__ or {})
    monkeypatch.setattr(
        waiting_module.wait_for_promotion,
        "__kwdefaults__",
        {**defaults, "clock": clock.clock, "pause": clock.pause},
    )
    yield Folder(tmp_path, clock)
    _forget_engines(lambda url: str(tmp_path) in url or url == "sqlite:///mlflow.db")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_example(block: Block, folder: Folder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the block runs and prints what the document shows."""
    if block.setup is not None:
        assert block.setup in SETUPS, f"docs/cli.md:{block.lineno}: unknown setup {block.setup}"
        SETUPS[block.setup](folder)
    shell = Shell(folder)
    monkeypatch.setattr(access_module, "connect", shell.connect)
    for command in block.commands:
        shell.run(command)
    shell.check_exit_codes()
    assert len(shell.runs) == sum(
        1 for c in block.commands if "mlflow-governance" in shlex.split(c.text, comments=True)
    )


# ---------------------------------------------------------------------- coverage


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _example_commands() -> list[str]:
    return [
        command.text
        for block in BLOCKS
        for command in block.commands
        if "mlflow-governance" in command.text
    ]


@pytest.mark.parametrize("name", [name for name, _ in _commands(main)])
def test_every_command_has_an_example_and_every_option_is_documented(name: str) -> None:
    """Each command appears in a console example; each of its options in its section."""
    command = dict(_commands(main))[name]
    assert any(
        re.search(rf"mlflow-governance {re.escape(name)}\b", text) for text in _example_commands()
    ), f"no console example runs '{name}'"
    text = DOC.read_text(encoding="utf-8")
    heading = re.search(rf"^### `{re.escape(name)}`.*$", text, re.MULTILINE) or re.search(
        rf"^### .*`{re.escape(name)}`.*$", text, re.MULTILINE
    )
    assert heading is not None, f"no section '### `{name}`' in docs/cli.md"
    end = text.find("\n### ", heading.end())
    section = text[heading.end() : end if end != -1 else len(text)]
    for param in command.params:
        for option in param.opts:
            if option.startswith("--") and option != "--help":
                assert option in section, f"'{name}' section does not mention {option}"


def test_every_exit_code_of_the_cli_is_in_the_table() -> None:
    from mlflow_governance.cli import _common

    text = DOC.read_text(encoding="utf-8")
    for code in (
        0,
        _common.EXIT_FAILED,
        _common.EXIT_USAGE,
        _common.EXIT_PENDING,
        _common.EXIT_TIMEOUT,
        _common.EXIT_UNREACHABLE,
    ):
        assert re.search(rf"^\| `{code}` \|", text, re.MULTILINE), f"exit code {code}"


def test_db_upgrade_example_names_the_head_revision() -> None:
    from mlflow_governance.db import HEAD_REVISION

    assert f"Governance tables at revision {HEAD_REVISION}." in DOC.read_text(encoding="utf-8")


# ---------------------------------------------------------------------- the comparison itself

TABLE_OUTPUT = [
    "ID  TIME                         ACTOR  ACTION",
    "10  2026-11-26T05:56:20.854626Z  bob    set_registered_model_alias",
    "9   2026-11-26T05:56:20.761972Z  bob    transition_model_version_stage",
]


def test_same_shape_with_other_numbers_times_and_hashes_matches() -> None:
    documented = [
        "Request #2 is pending.",
        "OK: 11 audit rows, chain intact (head dd965a5fb465af56).",
    ]
    actual = ["Request #17 is pending.", "OK: 3 audit rows, chain intact (head 0a1b2c3d4e5f6a7b)."]
    assert match_output(documented, actual) is None


def test_a_table_may_be_longer_or_shorter_than_documented() -> None:
    longer = [
        *TABLE_OUTPUT,
        "8   2026-11-26T05:56:20.761972Z  bob    transition_model_version_stage",
    ]
    assert match_output(TABLE_OUTPUT, longer) is None
    assert match_output(TABLE_OUTPUT, TABLE_OUTPUT[:2]) is None


def test_a_changed_table_header_is_rejected() -> None:
    changed = [TABLE_OUTPUT[0].replace("ACTOR", "USER "), *TABLE_OUTPUT[1:]]
    problem = match_output(TABLE_OUTPUT, changed)
    assert problem is not None and "table header" in problem


def test_a_changed_sentence_a_missing_or_an_extra_line_is_rejected() -> None:
    documented = ["Request #2 is pending.", "Done."]
    assert match_output(documented, ["Request #2 is approved.", "Done."]) is not None
    assert match_output(documented, ["Request #2 is pending."]) is not None
    assert match_output(documented, [*documented, "Warning: something"]) is not None
    assert match_output(["Error: Refused: …"], ["Error: Refused: bob may not approve"]) is None
    assert match_output(["Error: Refused: …"], ["Refused: bob may not approve"]) is not None


def test_an_elision_stands_for_any_lines() -> None:
    assert (
        match_output(["Applied policy #1.", "...", "end"], ["Applied policy #2.", "a", "b", "end"])
        is None
    )
    assert match_output(["Applied policy #1.", "..."], ["Applied policy #2."]) is None
    assert match_output(["...", "end"], ["a", "b"]) is not None


def test_the_parser_finds_commands_outputs_setups_and_continuations() -> None:
    text = "\n".join(
        [
            "<!-- setup: row-4-edited -->",
            "```console",
            "$ export MLFLOW_TRACKING_USERNAME=dave",
            "$ mlflow-governance audit verify \\",
            "    --json   # a comment",
            "{",
            "}",
            "",
            "$ echo $?",
            "1",
            "```",
        ]
    )
    (block,) = parse_blocks(text)
    assert block.setup == "row-4-edited"
    assert [c.text for c in block.commands] == [
        "export MLFLOW_TRACKING_USERNAME=dave",
        "mlflow-governance audit verify --json   # a comment",
        "echo $?",
    ]
    assert block.commands[1].output == ["{", "}"]
    assert block.commands[2].output == ["1"]


def test_the_document_has_examples() -> None:
    assert len(BLOCKS) >= 20
    assert all(block.commands for block in BLOCKS)
