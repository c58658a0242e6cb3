"""Declaring job types and workers: a job type is a function with its contract, a worker is a spec.

As in Dramatiq, where an actor is a function, an Offload job type is the function that does the
work, declared with :func:`job` next to its code::

    @job("text.wordcount", queue="text", time_limit=60)
    def wordcount(ctx: JobContext, payload: WordCount) -> WordCountResult:
        \"\"\"Count the words of a text.\"\"\"
        ...

The declaration is the whole contract: its name, queue, payload and result models (read from
the annotations), description (the docstring's first line), retry policy, time limit, priority
and limits. A contract that other processes import as data (the built-in ones, in
:mod:`offload.contracts`) is bound to its handler with ``@job(CONTRACT)`` instead.

As in arq, where ``WorkerSettings`` lists a worker's functions, a worker package exports one
:class:`WorkerSpec`: its job types, its settings class and what its handlers share (a mail
session, a storage client), built once per process and reached with ``ctx.resource(Type)``.
``dramatiq package.worker:setup`` runs it, and the worker registers its contracts in Redis so
the API and every view pick them up (:mod:`offload.status.catalogue`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel
from typing_extensions import TypeVar as TypeVarDefault

from offload.contracts import Concurrency, JobContract, Payload, Priority, RetryPolicy, SubmissionPolicy
from offload.settings import Settings

if TYPE_CHECKING:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from offload.publish import Publisher
    from offload.worker.context import JobContext, Resources

P = TypeVar("P", bound=Payload)
R = TypeVar("R")
S = TypeVarDefault("S", bound=Settings, default=Settings)


@dataclass(frozen=True)
class JobType(Generic[P, R]):
    """One job type as a worker serves it: its contract and the function that runs it.

    Calling it calls the handler, so a test may run a job type as a plain function.
    """

    contract: JobContract
    handler: Callable[[JobContext, P], R]

    @property
    def name(self) -> str:
        """The job type's name (``domain.verb``)."""
        return self.contract.name

    def __call__(self, ctx: JobContext, payload: P) -> R:
        """Run the handler."""
        return self.handler(ctx, payload)


@overload
def job(contract: JobContract, /) -> Callable[[Callable[[JobContext, Any], R]], JobType[Any, R]]: ...


@overload
def job(
    name: str,
    /,
    *,
    queue: str,
    retry: RetryPolicy = ...,
    time_limit: float = ...,
    priority: Priority = ...,
    internal: bool = ...,
    exhausted_state: Literal["failed", "dead"] = ...,
    quota: str | None = ...,
    units: Callable[[Any], int] | None = ...,
    concurrency: Concurrency | None = ...,
    policy: SubmissionPolicy | None = ...,
) -> Callable[[Callable[[JobContext, Any], R]], JobType[Any, R]]: ...


def job(
    contract_or_name: JobContract | str,
    /,
    *,
    queue: str | None = None,
    retry: RetryPolicy | None = None,
    time_limit: float = 300.0,
    priority: Priority = Priority.NORMAL,
    internal: bool = False,
    exhausted_state: Literal["failed", "dead"] = "failed",
    quota: str | None = None,
    units: Callable[[Any], int] | None = None,
    concurrency: Concurrency | None = None,
    policy: SubmissionPolicy | None = None,
) -> Callable[[Callable[[JobContext, Any], R]], JobType[Any, R]]:
    """Declare the decorated function as the handler of a job type.

    With a name, the decorator declares the contract from its arguments and the function: the
    payload model is the annotation of its second parameter, the result model its return
    annotation (if a pydantic model) and the description its docstring's first line. With a
    :class:`JobContract`, it binds the function to that contract, checking the annotation.

    Raises:
        ValueError: a name without a queue, a handler without a payload annotation or docstring,
            or an annotation that is not the contract's payload model.
    """

    def declare(fn: Callable[[JobContext, Any], R]) -> JobType[Any, R]:
        payload, result = _models(fn)
        if isinstance(contract_or_name, JobContract):
            contract = contract_or_name
            if payload is not None and payload is not contract.payload:
                raise ValueError(
                    f"{fn.__qualname__} takes {payload.__name__}, but {contract.name!r} carries "
                    f"{contract.payload.__name__}."
                )
            return JobType(contract, fn)
        if queue is None:
            raise ValueError(f"Job type {contract_or_name!r} needs a queue.")
        if payload is None:
            raise ValueError(f"{fn.__qualname__} must annotate its payload parameter with a Payload model.")
        description = inspect.getdoc(fn)
        if not description:
            raise ValueError(f"{fn.__qualname__} needs a docstring: its first line describes the job type.")
        contract = JobContract(
            name=contract_or_name,
            queue=queue,
            payload=payload,
            description=description.splitlines()[0],
            result=result,
            retry=retry or RetryPolicy(),
            time_limit=time_limit,
            priority=priority,
            internal=internal,
            exhausted_state=exhausted_state,
            quota=quota,
            concurrency=concurrency,
            policy=policy or SubmissionPolicy(),
            **({"units": units} if units is not None else {}),
        )
        return JobType(contract, fn)

    return declare


H = TypeVar("H")


def served_by(owner: type[H], method: Callable[[H, JobContext, P], R], contract: JobContract) -> JobType[P, R]:
    """A job type whose handler is a method of an object the worker shares (``ctx.resource(owner)``).

    For handlers that hold clients (a mail session, a storage client) in one object, as the
    built-in workers do: ``send = served_by(EmailHandlers, EmailHandlers.send, SEND)``.
    """

    def handler(ctx: JobContext, payload: P) -> R:
        return method(ctx.resource(owner), ctx, payload)

    handler.__name__ = handler.__qualname__ = f"{owner.__name__}.{getattr(method, '__name__', 'handler')}"
    handler.__doc__ = method.__doc__
    return JobType(contract, handler)


def _models(fn: Callable[..., Any]) -> tuple[type[Payload] | None, type[BaseModel] | None]:
    """The payload and result models of a handler, read from its annotations (``None`` where absent)."""
    hints = typing.get_type_hints(fn)
    parameters = list(inspect.signature(fn).parameters)
    payload = hints.get(parameters[1]) if len(parameters) >= 2 else None
    result = hints.get("return")
    return (
        payload if isinstance(payload, type) and issubclass(payload, Payload) else None,
        result if isinstance(result, type) and issubclass(result, BaseModel) else None,
    )


def no_resources(_settings: Any, _publisher: Publisher, _given: Resources) -> Iterable[object]:
    """A worker whose handlers share nothing."""
    return ()


@dataclass(frozen=True)
class WorkerSpec(Generic[S]):
    """Everything one worker package serves, and how to build what its handlers share.

    Every worker also serves the system job types (``system.noop`` and the others). Its queues
    are those of its job types: nothing lists them again.

    Args:
        name: the service's name (``email``): shown with its types in the catalogue and the admin page.
        jobs: its job types.
        settings: its settings class (read from ``OFFLOAD_*`` variables).
        resources: builds, once per process, the objects its handlers reach with ``ctx.resource(Type)``;
            it gets the settings, the publisher and the objects the caller gave (a test's mailer),
            which it uses instead of building its own.
    """

    name: str
    jobs: tuple[JobType[Any, Any], ...]
    settings: type[S] = Settings  # type: ignore[assignment]
    resources: Callable[[S, Publisher, Resources], Iterable[object]] = field(default=no_resources)

    def __post_init__(self) -> None:
        names = [job_type.name for job_type in self.jobs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"Worker {self.name!r} declares {', '.join(twice)} more than once.")

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues of its job types, sorted (the system queue besides)."""
        return tuple(sorted({job_type.contract.queue for job_type in self.jobs}))

    @property
    def contracts(self) -> tuple[JobContract, ...]:
        """The contracts of its job types."""
        return tuple(job_type.contract for job_type in self.jobs)

    def build(
        self, settings: S, *, publisher: Publisher | None = None, resources: Iterable[object] = ()
    ) -> RabbitmqBroker:
        """This worker's broker and actors, from explicit settings (tests pass their own).

        ``resources`` are handed to the spec's ``resources`` builder, which uses them instead of
        building its own (a test's mailer), and are reachable from handlers too.
        """
        from offload.worker.app import build_worker

        return build_worker(self, settings, publisher=publisher, resources=resources)

    def setup(self) -> RabbitmqBroker:
        """Read the settings from the environment and build the worker: what ``dramatiq pkg.worker:setup`` calls."""
        from offload.settings import load_settings
        from offload.worker.priority import yield_cpu

        settings = load_settings(self.settings)
        yield_cpu(settings.worker_nice)
        return self.build(settings)


#: The entry-point group a worker package names its spec in (``name = "package.worker:SPEC"``).
ENTRY_POINT_GROUP = "offload.workers"


def installed_specs() -> dict[str, WorkerSpec[Any]]:
    """Every worker spec installed in this environment, by entry-point name, sorted.

    A worker package makes itself known by naming its spec in its ``pyproject.toml``::

        [project.entry-points."offload.workers"]
        text = "offload_text.worker:SPEC"

    Raises:
        TypeError: an entry point names something that is not a :class:`WorkerSpec`.
    """
    from importlib.metadata import entry_points

    found: dict[str, WorkerSpec[Any]] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        spec = point.load()
        if not isinstance(spec, WorkerSpec):
            raise TypeError(f"Entry point {point.name!r} ({point.value}) is not a WorkerSpec.")
        found[point.name] = spec
    return found
