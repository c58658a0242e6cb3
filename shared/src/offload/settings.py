"""Process settings, read once from ``OFFLOAD_*`` environment variables.

Every process (API, worker, scheduler, SDK user) builds one frozen :class:`Settings` at its
composition root and passes it down. Only this module reads the environment. Secrets are
``SecretStr`` so that they never appear in a ``repr``, a log line or a response.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar, overload
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from offload.errors import ConfigError
from offload.numbers import whole_number
from offload.wire_access import WireAccess, WireGrant, parse_grants

if TYPE_CHECKING:
    from offload.contracts import JobContract, SubmissionPolicy

#: The roles an API key can carry. ``reader`` reads its tenant's jobs; ``client`` also submits,
#: cancels and retries them; ``admin`` does all that for every tenant and operates queues.
Role = Literal["reader", "client", "admin"]

_ROLES: tuple[Role, ...] = ("reader", "client", "admin")


@dataclass(frozen=True)
class ApiKey:
    """One API key entry: the tenant it acts for and its role. The secret itself is the map key."""

    tenant: str
    role: Role


def parse_api_keys(raw: str) -> dict[str, ApiKey]:
    """Parse ``"key=tenant:role,key2=tenant2:role2"`` into a map from key to :class:`ApiKey`.

    Raises:
        ConfigError: an entry is malformed; the message never contains the key itself.
    """
    keys: dict[str, ApiKey] = {}
    for position, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        secret, sep, grant = entry.partition("=")
        tenant, _, role = grant.partition(":")
        role = role or "client"
        if not sep or not secret or not re.match(r"^[A-Za-z0-9_-]{1,64}$", tenant) or role not in _ROLES:
            raise ConfigError(
                f"OFFLOAD_API_KEYS entry {position} is not 'key=tenant:role' (tenant: letters, digits, _ or -; "
                f"role one of {list(_ROLES)})."
            )
        if len(secret) < 16:
            raise ConfigError(f"OFFLOAD_API_KEYS entry {position} has a key shorter than 16 characters.")
        keys[secret] = ApiKey(tenant, role)
    return keys


#: The signing key used when none is set: fine on a laptop, refused in production.
_DEV_SIGNING_KEY = "offload-development-signing-key-change-me"

#: Keys, passwords and secrets written in files Offload publishes, which anyone can read:
#: ``.env.example``, the Kubernetes dev overlay, the benchmarks and the tests' keys (and the
#: development signing key above). Production refuses each of them wherever it is used (issue 29,
#: item 2); ``tests/security/test_outside_review.py`` reads those files and the README, the docs,
#: ``docker-compose.yml``, ``deploy/`` and ``scripts/``, and fails if any secret in them is accepted.
PUBLISHED_SECRETS = frozenset(
    {
        _DEV_SIGNING_KEY,
        # .env.example
        "change-me-admin-key-0123456789",
        "change-me-signing-key-0123456789abcdef",
        "change-me-rabbitmq-admin",
        "change-me-rabbitmq-app",
        "change-me-redis",
        "change-me-grafana",
        # deploy/k8s/overlays/dev
        "dev-admin-key-0123456789",
        "dev-signing-key-not-for-production-0123",
        "dev-rabbitmq-password-not-for-production",
        "dev-redis-password-not-for-production",
        # bench/config.py and tests/conftest.py
        "bench-api-key-0123456789-abcdef",
        "acme-client-key-0123456789",
        "acme-reader-key-0123456789",
        "globex-client-key-0123456789",
        "ops-admin-key-0123456789ab",
        # RabbitMQ's and the examples' account
        "guest",
    }
)
#: Words that mark a value as an example someone forgot to replace.
_PLACEHOLDER = re.compile(r"change[-_ ]?me|not[-_ ]for[-_ ]production|placeholder", re.IGNORECASE)
#: The shortest API key or signing key production accepts: 32 random characters are beyond guessing,
#: online through the API's and the admin page's attempt limits or offline from a leaked signature.
MIN_PRODUCTION_KEY = 32
#: How to make one.
_GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def weakness(secret: str, *, min_length: int = MIN_PRODUCTION_KEY) -> str | None:
    """Why ``secret`` must not guard a production deployment, or None if nothing is known against it.

    It is refused if it is published (:data:`PUBLISHED_SECRETS`, or it carries a placeholder's
    words), one character repeated, or shorter than ``min_length``. The reason never quotes it.
    """
    if secret in PUBLISHED_SECRETS or _PLACEHOLDER.search(secret):
        return "is an example published in Offload's own files"
    if len(set(secret)) == 1:
        return "is one character repeated"
    if len(secret) < min_length:
        return f"is shorter than {min_length} characters"
    return None


class _Base(BaseSettings):
    """Reads each field from ``OFFLOAD_<FIELD>``; frozen; unknown variables are ignored."""

    model_config = SettingsConfigDict(env_prefix="OFFLOAD_", frozen=True, extra="ignore")


class ConnectionSettings(_Base):
    """Where Offload's servers are and how every process logs and exports metrics."""

    #: Which environment this is; ``production`` refuses known-insecure defaults.
    env: Literal["development", "test", "production"] = "development"
    #: AMQP URL of RabbitMQ (vhost included).
    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")
    #: Redis URL of the job status store (database included).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    #: Prefix of every Redis key Offload writes, so that several installations can share one Redis.
    redis_prefix: str = "offload"
    #: Log level and format (``json`` lines, or ``text`` for a terminal).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    #: Export Prometheus metrics (workers: Dramatiq's exposition server at ``dramatiq_prom_host``
    #: and ``dramatiq_prom_port``; the API: ``/metrics``).
    metrics: bool = True


class RecordSettings(_Base):
    """How long job records and idempotency keys are kept (every process that writes them)."""

    #: Seconds a succeeded job's record is kept.
    retention_succeeded: int = Field(default=86_400, ge=60)
    #: Seconds a failed, dead or cancelled job's record is kept.
    retention_failed: int = Field(default=7 * 86_400, ge=60)
    #: Seconds an ``Idempotency-Key`` is remembered.
    idempotency_ttl: int = Field(default=86_400, ge=60)
    #: Seconds an entry of the audit log of admin actions is kept (90 days).
    audit_retention: int = Field(default=90 * 86_400, ge=3600)
    #: Most entries the audit log keeps (the oldest go first, whatever their age).
    audit_max_entries: int = Field(default=100_000, ge=100)


class SubmissionSettings(_Base):
    """What a submission may ask, checked wherever jobs are submitted (the API, the SDK, workers' follow-ups)."""

    #: Most jobs in one batch request.
    max_batch_jobs: int = Field(default=500, ge=1, le=10_000)
    #: Longest delay a client may ask for, in seconds (30 days).
    max_delay: int = Field(default=30 * 86_400, ge=1)
    #: Seconds the broker connection may owe a confirm before it counts as hung and is replaced;
    #: the longest any publish waits (the API's submissions wait at most ``submit_deadline``).
    publish_timeout: float = Field(default=2.0, gt=0, le=30)
    #: Hosts exempt from the SSRF guard's public-address rule (comma-separated; development and tests).
    url_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Services that publish jobs straight to RabbitMQ (JSON): each one's broker user, the tenants it may
    #: act for (the first is its own) and the job types it may submit (``offload.wire_access``).
    wire_publishers: Annotated[dict[str, WireGrant], NoDecode] = Field(default_factory=dict)
    #: Broker users trusted as Offload's own besides the user of ``OFFLOAD_BROKER_URL`` (comma-separated).
    wire_trusted_users: Annotated[list[str], NoDecode] = Field(default_factory=list)


class ApiSettings(_Base):
    """The HTTP API's keys, limits and admission control."""

    #: API keys, ``key=tenant:role,...``. Empty means no key is accepted.
    api_keys: SecretStr = SecretStr("")
    #: Public base URL of the API, used in status and events links (empty: taken from the request).
    public_url: str = ""
    #: Largest HTTP request body in bytes (checked before parsing).
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: Largest upload in bytes.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    #: Largest video upload in bytes (MP4, QuickTime, WebM, Matroska, AVI; streamed to storage).
    max_video_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    #: Seconds from a submission's admission by which the API answers it: a broker confirm still
    #: missing then is given up (the job is withdrawn; 503 ``broker_unavailable`` with Retry-After)
    #: rather than answered late. Keeps every answer within a second under overload (issue 9, F14);
    #: the connection itself is replaced only after ``publish_timeout``.
    submit_deadline: float = Field(default=0.75, gt=0, le=30)
    #: Most Server-Sent Event streams one API process keeps open at once, shared between tenants: at
    #: the cap, a tenant holding less than its share still gets one, up to twice this in all
    #: (``offload_api.streams``).
    max_event_streams: int = Field(default=1000, ge=1)
    #: Seconds between SSE keep-alive comments.
    sse_keepalive: float = Field(default=15.0, gt=0)
    #: Seconds a client of ``GET /v1/events`` may fall behind the changes it is sent (it reads too
    #: slowly) before its stream is cut with an ``overflow`` event.
    events_max_lag: float = Field(default=30.0, gt=0)
    #: Default and longest lifetime, in seconds, of a browser token (``?token=``, read-only).
    browser_token_ttl: int = Field(default=900, ge=10)
    max_browser_token_ttl: int = Field(default=86_400, ge=10)
    #: Origins (``https://app.example.com``, comma-separated) whose pages may read the routes a
    #: browser token opens (a job's status and events, ``/v1/events``); no other route answers CORS.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Most requests one API process works on at once. Past it a request is answered 503
    #: ``overloaded`` with ``Retry-After`` at once, before its body is read: excess load is refused
    #: in a millisecond instead of queueing until every answer is late (issue 9, F14).
    max_inflight_requests: int = Field(default=64, ge=1)
    #: Seconds a request may take in the app before the process lowers its in-flight limit (by a
    #: quarter, at most once per this many seconds; it grows back by about one per limit's worth
    #: of faster requests): when the cores are shared or slow, fewer requests at once keeps each
    #: answer, accepted or refused, inside a client's deadline. 0: the limit stays fixed.
    admission_target_latency: float = Field(default=0.25, ge=0, le=30)
    #: Most bytes of request bodies (by Content-Length, chunked ones counted as
    #: ``max_body_bytes``) one API process admits at once; past it, 503 ``overloaded``. Bounds the
    #: memory that many large bodies at once can take; at least ``max_body_bytes``.
    max_inflight_body_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    #: Requests per second each tenant may make to the whole API, all processes together (one
    #: GCRA bucket per tenant in Redis, which each process takes from in leases of ~20 ms of the
    #: rate, checked before the request reaches the app); past it, 429 ``rate_limited`` with
    #: ``Retry-After``. While Redis is unreachable each process keeps a bucket of its own with this
    #: rate (the API then allows this times its processes). 0: no limit.
    tenant_rate_limit: float = Field(default=0.0, ge=0)
    #: Requests a tenant may make at once above its rate (the bucket's size); 0: one second's worth.
    tenant_rate_burst: int = Field(default=0, ge=0)


class StorageSettings(_Base):
    """Where uploads and job outputs live, and the signed links to them (the API and the workers)."""

    #: Where uploads and job outputs live: ``local`` (``storage_dir``, one host or a shared volume)
    #: or ``s3`` (a bucket of an S3-compatible server, for processes on different hosts).
    storage_backend: Literal["local", "s3"] = "local"
    #: Where uploads and job outputs are stored (a directory shared by the API and the workers).
    storage_dir: str = ".offload/storage"
    #: The bucket (``storage_backend=s3``); it must exist and should stay private.
    s3_bucket: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$")
    #: Prefix of every object key Offload writes (e.g. ``offload/``), so the bucket can be shared.
    s3_prefix: str = Field(default="", pattern=r"^([A-Za-z0-9_.-]+/)*$")
    #: Endpoint of an S3-compatible server (MinIO, Ceph, ...); empty: AWS S3 of ``s3_region``.
    s3_endpoint_url: str = Field(default="", pattern=r"^(https?://[^/?#@\s]+/?)?$")
    #: The bucket's region (AWS); S3-compatible servers usually accept the default.
    s3_region: str = "us-east-1"
    #: Access key pair; both empty: boto3's own chain (IAM role for service accounts, instance role).
    s3_access_key_id: SecretStr = SecretStr("")
    s3_secret_access_key: SecretStr = SecretStr("")
    #: Key of the signatures on download links; shared by the API and the workers.
    signing_key: SecretStr = SecretStr(_DEV_SIGNING_KEY)
    #: Seconds a download link is valid.
    link_ttl: int = Field(default=7 * 86_400, ge=60)
    #: Seconds uploads and job outputs are kept after their last write (``storage.cleanup`` removes
    #: older ones); at least ``link_ttl``, so a link never outlives its file.
    storage_retention: int = Field(default=7 * 86_400, ge=3600)


class WorkerSettings(_Base):
    """How worker processes run jobs: limits against the broker, recycling, niceness, concurrency."""

    #: RabbitMQ's ``consumer_timeout`` in seconds; time limits and backoffs must stay below it.
    consumer_timeout: int = Field(default=1800, ge=60)
    #: Deliveries of one job that may end without the job finishing (worker crash) before it is dead.
    max_unfinished_attempts: int = Field(default=3, ge=1, le=100)
    #: Seconds a job may run past its time limit (stuck in C code, where the time limit cannot
    #: interrupt it) before its worker process ends itself so the job is redelivered or quarantined.
    hard_limit_grace: float = Field(default=30.0, ge=1, le=600)
    #: Resident memory (MiB) past which a worker process is recycled gracefully after a job (it
    #: finishes its running jobs, exits and is replaced; Celery's max_memory_per_child). 0: never.
    worker_max_memory_mb: int = Field(default=0, ge=0)
    #: Niceness (0-19) each worker process of this service takes at start: the higher, the more it
    #: yields the CPU to other processes on the host. Email and webhooks default to 5 (the API,
    #: whose callers wait, goes first), media and reports to 15 (``offload.worker.priority``).
    worker_nice: int = Field(default=0, ge=0, le=19)
    #: Concurrency limits by name, overriding the contracts' defaults: ``report.build:tenant=1,...``
    #: (how many jobs with the same key may run at once; see ``offload.status.slots``).
    concurrency_limits: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    #: Factor on every retry backoff (a receiver's ``Retry-After`` is still honoured in full). Below 1
    #: only for tests and drills, so that a job's whole retry schedule runs in seconds; refused in
    #: production.
    retry_backoff_scale: float = Field(default=1.0, gt=0, le=1)

    def submission_policy(self, contract: JobContract) -> SubmissionPolicy:
        """The submission policy this worker registers for ``contract``: by default, the contract's own.

        A worker package whose settings size a policy overrides it (``EmailSettings``: the email
        quota and recipient domains); the catalogue carries it to the API and every other process.
        """
        return contract.policy


class SchedulerSettings(_Base):
    """The scheduler's time zone, lock and tenant."""

    #: The time zone of the schedules' cron expressions (an IANA name such as ``Europe/Berlin``).
    timezone: str = "UTC"
    #: Seconds the active scheduler's lock lives without renewal: a standby takes over this long
    #: after the active one dies.
    scheduler_lock_ttl: float = Field(default=30.0, ge=1, le=600)
    #: The tenant scheduled jobs run as.
    scheduler_tenant: str = Field(default="system", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class Settings(
    ConnectionSettings,
    RecordSettings,
    SubmissionSettings,
    ApiSettings,
    StorageSettings,
    WorkerSettings,
    SchedulerSettings,
):
    """Settings of every Offload process, grouped by the process that reads them.

    Each field reads ``OFFLOAD_<FIELD>``; durations are in seconds unless the name says otherwise.
    A worker package adds its own fields in a subclass (``EmailSettings``); the groups above say
    which process reads what.
    """

    model_config = SettingsConfigDict(env_prefix="OFFLOAD_", frozen=True, extra="ignore")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("url_allow_hosts", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        """Host and domain names, comma-separated in the environment (case does not matter in them)."""
        return [n.strip().lower() for n in value.split(",") if n.strip()] if isinstance(value, str) else value

    @field_validator("wire_publishers", mode="before")
    @classmethod
    def _wire_grants(cls, value: object) -> object:
        return parse_grants(value)

    @field_validator("wire_trusted_users", mode="before")
    @classmethod
    def _split_users(cls, value: object) -> object:
        return [u.strip() for u in value.split(",") if u.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _publishers_not_trusted(self) -> Settings:
        both = sorted(set(self.wire_publishers) & self.wire_access.trusted)
        if both:
            raise ValueError(
                f"OFFLOAD_WIRE_PUBLISHERS maps {both}, which Offload trusts as its own (OFFLOAD_BROKER_URL's user or "
                "OFFLOAD_WIRE_TRUSTED_USERS); give each publishing service a user of its own"
            )
        return self

    @property
    def wire_access(self) -> WireAccess:
        """Who may publish jobs on the wire (``offload.wire_access``)."""
        return WireAccess.of(self.broker_url.get_secret_value(), self.wire_trusted_users, self.wire_publishers)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Origins, comma-separated in the environment, without a trailing slash (as browsers send them)."""
        return [o.strip().rstrip("/") for o in value.split(",") if o.strip()] if isinstance(value, str) else value

    @field_validator("concurrency_limits", mode="before")
    @classmethod
    def _split_limits(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        limits: dict[str, object] = {}
        for item in (part.strip() for part in value.split(",")):
            name, sep, number = item.rpartition("=")
            limit = whole_number(number)
            if item and (not sep or not name or not limit):
                raise ValueError(f"expected name=N (N at least 1), got {item!r}")
            if item and limit:
                limits[name.strip()] = limit
        return limits

    @model_validator(mode="after")
    def _one_body_fits(self) -> Settings:
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"OFFLOAD_MAX_INFLIGHT_BODY_BYTES ({self.max_inflight_body_bytes}) is less than OFFLOAD_MAX_BODY_BYTES "
                f"({self.max_body_bytes}): a body of the largest allowed size would always be refused"
            )
        return self

    @model_validator(mode="after")
    def _files_outlive_links(self) -> Settings:
        if self.storage_retention < self.link_ttl:
            raise ValueError(
                f"OFFLOAD_STORAGE_RETENTION ({self.storage_retention} s) is shorter than OFFLOAD_LINK_TTL "
                f"({self.link_ttl} s): download links would point at removed files"
            )
        return self

    @model_validator(mode="after")
    def _bucket_named(self) -> Settings:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("OFFLOAD_STORAGE_BACKEND is s3 but OFFLOAD_S3_BUCKET is empty")
        if bool(self.s3_access_key_id.get_secret_value()) != bool(self.s3_secret_access_key.get_secret_value()):
            raise ValueError("set both OFFLOAD_S3_ACCESS_KEY_ID and OFFLOAD_S3_SECRET_ACCESS_KEY, or neither")
        return self

    @field_validator("api_keys", mode="after")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    @property
    def keys(self) -> dict[str, ApiKey]:
        """The parsed API keys (key → tenant and role)."""
        return parse_api_keys(self.api_keys.get_secret_value())

    def check_production(self) -> None:
        """Refuse to run in production with development credentials.

        Raises:
            ConfigError: a known-insecure default is in use.
        """
        if self.env != "production":
            return
        if "guest:guest@" in self.broker_url.get_secret_value():
            raise ConfigError("OFFLOAD_BROKER_URL uses RabbitMQ's guest account; set an application user.")
        # An empty OFFLOAD_API_KEYS is fine: production keys are managed in Redis (``offload keys create``
        # makes the first admin key), and an environment key cannot be revoked without a restart.
        if self.retry_backoff_scale != 1.0:
            raise ConfigError("OFFLOAD_RETRY_BACKOFF_SCALE is a test setting; production retries on the full schedule.")
        self._check_secrets()

    def _check_secrets(self) -> None:
        """Refuse published and weak secrets: every key and secret setting, and the URLs' passwords.

        Offload's own keys (API keys, the signing key) must also be :data:`MIN_PRODUCTION_KEY`
        characters long; the passwords of RabbitMQ, Redis, SMTP and S3 follow their servers' rules,
        so only published and one-character ones are refused.

        Raises:
            ConfigError: one of them is weak; the message names the setting, never the value.
        """
        hint = f"use {MIN_PRODUCTION_KEY}+ random characters ({_GENERATE})"
        for position, key in enumerate(self.keys, start=1):
            if why := weakness(key):
                raise ConfigError(f"OFFLOAD_API_KEYS entry {position} {why}; {hint}.")
        for name, value in self:
            if not isinstance(value, SecretStr) or name == "api_keys":
                continue
            secret = value.get_secret_value()
            if name.endswith("_url"):
                secret = unquote(urlsplit(secret).password or "")
            why = weakness(secret) if name == "signing_key" else weakness(secret, min_length=1) if secret else None
            if why:
                what = "password" if name.endswith("_url") else "value"
                raise ConfigError(f"The {what} of OFFLOAD_{name.upper()} {why}; {hint}.")


S = TypeVar("S", bound=Settings)


@overload
def load_settings(cls: None = None, **overrides: object) -> Settings: ...


@overload
def load_settings(cls: type[S], **overrides: object) -> S: ...


def load_settings(cls: type[Settings] | None = None, **overrides: object) -> Settings:
    """Build the settings (``cls``, a subclass of :class:`Settings` for a service) from the environment.

    Raises:
        ConfigError: a variable is missing or invalid; the message names the variable.
    """
    try:
        settings = (cls or Settings)(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"OFFLOAD_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid settings: {problems}.") from None
    settings.check_production()
    return settings
