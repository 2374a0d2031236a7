"""Client load on a governance server: threads registering, staging, aliasing, asking.

Each :class:`Load` thread acts as one writer of the fault policy over MLflow's REST API,
in a loop until told to stop: register a version of one of the shared models, move it to
Staging, point ``candidate`` at it, now and then ask for Production (refused by the gate:
an audited 403) or archive it. Every request's answer is kept as an
:class:`~tests.faults.invariants.Outcome`, with the phase of the test it started and
ended in, so a test can say what clients saw while the fault lasted.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from tests.faults.invariants import NO_RESPONSE, OK, Outcome

#: One request's upper bound: generous for a loaded machine, short enough that a hung
#: server fails the test rather than the CI job.
REQUEST_TIMEOUT = 60.0
_REST = "/api/2.0/mlflow"


@dataclass(frozen=True)
class Seen:
    """An outcome, with the test phase at the request's start and end, and its body."""

    outcome: Outcome
    started: str
    ended: str
    status: int | None
    body: str
    finished: float  # time.monotonic() when the answer (or its absence) was known


class Load:
    """Writers hammering a server from threads until :meth:`stop`.

    Args:
        url: The server's base URL.
        users: ``(user, password)`` of each writer; one thread each.
        models: The registered models they share (created beforehand).
        on_answer: Called (from the client thread) after every answered request.
    """

    def __init__(
        self,
        url: str,
        users: Sequence[tuple[str, str]],
        models: Sequence[str],
        on_answer: Callable[[Load], None] | None = None,
    ) -> None:
        self.url = url
        self.users = list(users)
        self.models = list(models)
        self.on_answer = on_answer
        self.phase = "before"
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._threads: list[threading.Thread] = []
        self._crashed: list[BaseException] = []

    # ------------------------------------------------------------------ control

    def start(self) -> Load:
        for index, (user, password) in enumerate(self.users):
            thread = threading.Thread(
                target=self._guarded, args=(index, user, password), name=f"load-{user}"
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 2 * REQUEST_TIMEOUT) -> None:
        """Ask every thread to stop after its current request, and wait for them."""
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"client threads still running: {alive}"
        assert not self._crashed, f"a client thread crashed: {self._crashed[0]!r}"

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def count(self, predicate: Callable[[Seen], bool] = lambda s: s.status is not None) -> int:
        """How many requests so far match ``predicate`` (default: answered ones)."""
        with self._lock:
            return sum(1 for s in self._seen if predicate(s))

    @property
    def outcomes(self) -> list[Outcome]:
        return [s.outcome for s in self.seen]

    # ------------------------------------------------------------------ the writers

    def _guarded(self, index: int, user: str, password: str) -> None:
        try:
            self._write_loop(index, user, password)
        except BaseException as exc:  # reported by stop(), not lost in a thread
            self._crashed.append(exc)

    def _write_loop(self, index: int, user: str, password: str) -> None:
        session = requests.Session()
        session.auth = (user, password)
        try:
            for turn in itertools.count():
                if self.stopping.is_set():
                    return
                model = self.models[(index + turn) % len(self.models)]
                version = self._create(session, model)
                if version is None or self.stopping.is_set():
                    continue
                self._transition(session, model, version, "Staging")
                self._alias(session, model, version, "candidate")
                if turn % 3 == 2:
                    self._transition(session, model, version, "Production")
                elif turn % 4 == 3:
                    self._transition(session, model, version, "Archived")
        finally:
            session.close()

    def _create(self, session: requests.Session, model: str) -> int | None:
        body = {"name": model, "source": f"s3://bucket/{model}/model"}
        answer = self._post(
            session, "/model-versions/create", body, Outcome("create_model_version", model)
        )
        return int(answer["model_version"]["version"]) if answer is not None else None

    def _transition(self, session: requests.Session, model: str, version: int, stage: str) -> None:
        body = {
            "name": model,
            "version": str(version),
            "stage": stage,
            "archive_existing_versions": False,
        }
        self._post(
            session,
            "/model-versions/transition-stage",
            body,
            Outcome("transition_model_version_stage", model, version, stage=stage),
        )

    def _alias(self, session: requests.Session, model: str, version: int, alias: str) -> None:
        body = {"name": model, "alias": alias, "version": str(version)}
        self._post(
            session,
            "/registered-models/alias",
            body,
            Outcome("set_registered_model_alias", model, version, alias=alias),
        )

    def _post(
        self, session: requests.Session, path: str, body: dict[str, Any], asked: Outcome
    ) -> dict[str, Any] | None:
        """POST, record what came back; the parsed body on success, else None."""
        started = self.phase
        status: int | None = None
        text = ""
        answer: dict[str, Any] | None = None
        try:
            response = session.post(f"{self.url}{_REST}{path}", json=body, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            result = NO_RESPONSE
            text = f"{type(exc).__name__}: {exc}"
        else:
            status, text = response.status_code, response.text
            if status == 200:
                result, answer = OK, response.json()
            else:
                result = _error_code(response)
        version = asked.version
        if answer is not None and "model_version" in answer:
            version = int(answer["model_version"]["version"])
        outcome = Outcome(asked.action, asked.model, version, asked.stage, asked.alias, result)
        with self._lock:
            self._seen.append(
                Seen(outcome, started, self.phase, status, text[:2000], time.monotonic())
            )
        if status is not None and self.on_answer is not None:
            self.on_answer(self)
        return answer


def _error_code(response: requests.Response) -> str:
    try:
        code = response.json().get("error_code")
    except ValueError:
        code = None
    return str(code) if code else f"HTTP {response.status_code}"
