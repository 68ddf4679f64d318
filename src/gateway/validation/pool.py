"""A pool of validation worker processes: what the daemon uses (issue 4 §3, §6).

Each worker is a `multiprocessing` process (spawn or forkserver context) holding one `ValidationEngine`,
so every stylesheet is compiled once per worker and reused. The pool manages its processes itself rather
than through `ProcessPoolExecutor`, because a running task must be stoppable:

* per-document timeout: the worker is killed (SIGKILL) and a fresh one is started on the next demand.
  The first timeout of a document raises `ValidationTimeout` (a `TransientError`: the machine may just
  have been busy, the flow is retried with backoff); a second timeout of the same document (same bytes,
  syntax and profile, remembered by this pool) is the document's: the caller gets a `not_validated`
  report "timed out after Ns (twice)", which rejects that invoice with the cause;
* a crashed worker (os._exit, segfault in SaxonC, OOM kill) or a worker that cannot be started raises
  `ValidationUnavailable` (a `TransientError`): a machine problem is never the partner's problem — the
  flow goes FAILED, is retried, then QUARANTINED for an operator;
* a programming error inside the worker (an exception that is not a rule's dynamic error, which the
  engine already reports as the document's) raises `ValidationBug`: neither transient nor the
  document's, so the pipeline quarantines the flow at once;
* recycling: a worker is retired after `max_tasks_per_worker` documents (saxonche leaks memory).

Protocol on the worker's pipe: the parent sends `(xml, syntax, profile, container, partner)`; the worker
compiles what the plan needs, answers `("started",)`, validates, then answers `("report", report)` (or
`("bug", "TypeError: …")` when our own code failed).
Compile time is bounded by `compile_timeout_seconds`, the rule run by `timeout_seconds`.

`validate()` is blocking and thread-safe: each calling thread borrows one idle worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import signal
import threading
from collections import OrderedDict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, TransientError
from gateway.model import Syntax
from gateway.validation.plan import ValidationConfig
from gateway.validation.report import ValidationReport

_STOP_GRACE_SECONDS = 5.0
TIMED_OUT_MEMORY = 1000  # documents whose first timeout this pool remembers (bounded, oldest forgotten)


class ValidationUnavailable(TransientError):
    """No verdict because of the machine (worker crashed, could not start, pool closing): retry later."""


class ValidationTimeout(ValidationUnavailable):
    """A document's first timeout: retried once; a second timeout of the same document is its own."""


class ValidationBug(GatewayError):
    """Our own code failed inside the worker (TypeError, AttributeError…): quarantine, never reject."""


class _WorkerLost(Exception):
    """The worker can no longer be used (timeout, crash): the message is the cause."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def _worker_main(
    conn: Connection, config_data: dict[str, Any], rules_dir: str | None, builtin_dir: str | None
) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    from gateway.validation.engine import ValidationEngine
    from gateway.validation.rulepacks import RulePackRegistry

    config = ValidationConfig.model_validate(config_data)
    registry = RulePackRegistry(
        Path(rules_dir) if rules_dir else None, builtin_dir=Path(builtin_dir) if builtin_dir else None
    )
    engine = ValidationEngine(config, registry)
    if config.preload:
        engine.warm_up()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        xml, syntax, profile, container, partner = message
        try:
            plan = engine.plan(Syntax(syntax), profile, container, partner)
            engine.prepare(plan)
            conn.send(("started",))
            report = engine.run(plan, xml)  # a rule's dynamic error is in the report (the document's)
        except Exception as exc:  # noqa: BLE001 - our own bug: never let one document kill the worker loop
            conn.send(("bug", f"{type(exc).__name__}: {exc}"))
            continue
        conn.send(("report", report))
    conn.close()


class _Worker:
    def __init__(self, ctx: Any, args: tuple[Any, ...]) -> None:
        parent_end, child_end = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child_end, *args), name="gateway-validation-worker", daemon=True
        )
        self.process.start()
        child_end.close()
        self.conn: Connection = parent_end
        self.tasks = 0

    @property
    def pid(self) -> int | None:
        pid: int | None = self.process.pid
        return pid

    def _receive(self, timeout: float, what: str, *, timed_out: bool = False) -> tuple[Any, ...]:
        try:
            ready = self.conn.poll(timeout)
            if not ready:
                self.kill()
                raise _WorkerLost(what, timed_out=timed_out)
            answer: tuple[Any, ...] = self.conn.recv()
            return answer
        except (EOFError, OSError, ConnectionError):
            raise _WorkerLost(self._death_cause()) from None

    def _death_cause(self) -> str:
        self.process.join(_STOP_GRACE_SECONDS)
        code = self.process.exitcode
        if code is None:
            self.kill()
            return "validation worker stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"validation worker crashed (killed by {name})"
        return f"validation worker crashed (exit code {code})"

    def call(self, request: tuple[Any, ...], compile_timeout: float, timeout: float) -> ValidationReport:
        try:
            self.conn.send(request)
        except (OSError, ValueError):
            raise _WorkerLost(self._death_cause()) from None
        answer = self._receive(
            compile_timeout, f"compiling the rule packs took more than {compile_timeout:g}s"
        )
        if answer[0] == "started":
            answer = self._receive(timeout, f"timed out after {timeout:g}s", timed_out=True)
        self.tasks += 1
        if answer[0] == "bug":
            raise ValidationBug(f"validation worker: {answer[1]}")
        report: ValidationReport = answer[1]
        return report

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(_STOP_GRACE_SECONDS)
        if self.process.exitcode is None:
            self.kill()
        self.conn.close()

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join(_STOP_GRACE_SECONDS)
        self.conn.close()


class ValidationPool:
    """Worker processes started on demand, up to `config.workers` (0: one per CPU)."""

    def __init__(
        self, config: ValidationConfig, rules_dir: Path | None, *, builtin_dir: Path | None = None
    ) -> None:
        self.config = config
        self.size = config.workers or os.cpu_count() or 1
        self._ctx = multiprocessing.get_context(config.start_method)
        self._args = (
            config.model_dump(mode="json"),
            str(rules_dir) if rules_dir else None,
            str(builtin_dir) if builtin_dir else None,
        )
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self.restarts = 0  # workers replaced after a timeout or a crash (for metrics)
        self._timed_out: OrderedDict[str, None] = OrderedDict()  # documents that timed out once

    # -- worker bookkeeping ----------------------------------------------------------------------
    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise TransientError("validation pool is closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._workers) + self._starting < self.size:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker(self._ctx, self._args)
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._starting -= 1
            self._workers.add(worker)
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        retire = not healthy or worker.tasks >= self.config.max_tasks_per_worker
        with self._cond:
            if not retire and not self._closed:
                self._idle.append(worker)
                self._cond.notify()
                return
            self._workers.discard(worker)
            self._cond.notify()
        if healthy:
            worker.stop()
        else:
            worker.kill()

    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (for operators and tests)."""
        with self._cond:
            return [w.pid for w in self._workers if w.pid is not None]

    # -- API ---------------------------------------------------------------------------------------
    def validate(
        self, xml: bytes, syntax: Syntax, profile: str | None, container: str | None = None, partner: str = ""
    ) -> ValidationReport:
        """Validate in a worker.

        Raises `ValidationUnavailable` (transient: crash, failed start), `ValidationTimeout` (the first
        timeout of this document) or `ValidationBug`; a second timeout of the same document comes back
        as a `not_validated` report naming the cause.
        """
        try:
            worker = self._acquire()
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - EMFILE, EAGAIN, a broken interpreter: the machine's
            raise ValidationUnavailable(
                f"could not start a validation worker: {type(exc).__name__}: {exc}"
            ) from exc
        healthy = False
        try:
            report = worker.call(
                (xml, str(syntax), profile, container, partner),
                self.config.compile_timeout_seconds,
                self.config.timeout_seconds,
            )
            healthy = True
            return report
        except ValidationBug:
            raise  # the worker is retired all the same (healthy stays False): a bug may leave it broken
        except _WorkerLost as lost:
            with self._cond:
                self.restarts += 1
            if not lost.timed_out:
                raise ValidationUnavailable(str(lost)) from None
            key = _document_key(xml, syntax, profile, container)
            with self._cond:
                again = key in self._timed_out
                self._timed_out[key] = None
                self._timed_out.move_to_end(key)
                while len(self._timed_out) > TIMED_OUT_MEMORY:
                    self._timed_out.popitem(last=False)
            if again:
                return ValidationReport.not_validated(f"{lost} (twice)")
            raise ValidationTimeout(f"validation {lost}; the document will be tried once more") from None
        finally:
            self._release(worker, healthy)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                self._workers.discard(worker)
            self._cond.notify_all()
        for worker in idle:
            worker.stop()

    def __enter__(self) -> ValidationPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _document_key(xml: bytes, syntax: Syntax, profile: str | None, container: str | None) -> str:
    digest = hashlib.sha256(xml)
    digest.update(f"\0{syntax}\0{profile}\0{container}".encode())
    return digest.hexdigest()
