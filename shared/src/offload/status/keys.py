"""The one place the status store's Redis keys are named.

Every key Offload keeps in Redis is spelled here, one member of :class:`Keys` per key shape;
``README.md`` beside this file says what each holds, its Redis type and its lifetime. The Lua
scripts build some of these keys themselves from the prefix they are passed (``ARGV[1]``): the
members they build say so, so that the whole layout reads here. Callers outside
``offload.status`` never name a key: they ask a facet of the store.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from offload.status.shapes import _MAX_NAMED_ID
from offload.status.states import JobState

#: Marks a Redis database as a test suite's own (``testdb.py``); outside any prefix.
TEST_DB_OWNER = "offloadtest:owner"


@dataclass(frozen=True)
class Keys:
    """The key names under one deployment's prefix (``OFFLOAD_REDIS_PREFIX``, ``offload`` by default).

    Each member returns the full key, prefix included; a member naming a fixed key is a property.
    """

    prefix: str

    # The job records and their indexes (lua/_prelude.lua and the scripts build these too).

    def job(self, job_id: str) -> str:
        """The hash of one job: its fields and its history (also built in ``lua/_prelude.lua``)."""
        return f"{self.prefix}:job:{job_id}"

    def logs(self, job_id: str) -> str:
        """The list of the lines a job's handler wrote (also built in ``lua/_prelude.lua``)."""
        return f"{self.job(job_id)}:logs"

    def history(self, job_id: str) -> str:
        """Layout 1's list of a job's state changes, read until migrated (also built in ``lua/migrate.lua``)."""
        return f"{self.job(job_id)}:history"

    def index(self, owner: str, job_type: str, state: JobState) -> str:
        """The sorted set of ``owner``'s (a tenant or ``_all``) jobs of a type in a state.

        Also built in ``lua/_prelude.lua`` (``index_keys``) and ``lua/trim.lua``.
        """
        return f"{self.prefix}:idx:{owner}:t:{job_type}:s:{state.value}"

    @property
    def any_index(self) -> str:
        """A ``SCAN`` pattern matching every index key, of layout 1 (``idx:<tenant>``, ...) or 2."""
        return f"{self.prefix}:idx:*"

    @property
    def layout2_index(self) -> re.Pattern[str]:
        """Matches the index keys of layout 2 (:meth:`index`), and no other key ``any_index`` finds."""
        states = "|".join(state.value for state in JobState)
        return re.compile(rf"^{re.escape(self.prefix)}:idx:[^:]+:t:.+:s:({states})$")

    def error_index(self, owner: str, code: str) -> str:
        """The sorted set of ``owner``'s (a tenant or ``_all``) jobs whose error has ``code``, by when it was recorded.

        Also built in ``lua/_prelude.lua`` (``error_keys``) and ``lua/trim.lua``; outside ``idx:``,
        which the layout migration sweeps.
        """
        return f"{self.prefix}:erridx:{owner}:{code}"

    def error_codes(self, owner: str) -> str:
        """The set of error codes ``owner`` has error indexes of (also built in ``lua/``)."""
        return f"{self.prefix}:errors:{owner}"

    def types(self, owner: str) -> str:
        """The set of job types ``owner`` (a tenant or ``_all``) has indexes of (also built in ``lua/``)."""
        return f"{self.prefix}:types:{owner}"

    @property
    def tenants(self) -> str:
        """The set of tenants that have indexes (also built in ``lua/_prelude.lua`` and ``lua/migrate.lua``)."""
        return f"{self.prefix}:tenants"

    @property
    def scheduled(self) -> str:
        """The sorted set of delayed jobs and retries by due time (also built in ``lua/`` and ``pauses.py``)."""
        return f"{self.prefix}:scheduled"

    @property
    def outbox(self) -> str:
        """The sorted set of finished jobs whose webhook is to be queued (also built in ``lua/``)."""
        return f"{self.prefix}:outbox"

    def suffix(self, key: str) -> str:
        """``key`` without the prefix: the name a script joins to ``ARGV[1]`` (``lua/promoted.lua``'s ``ARGV[5]``)."""
        return key.removeprefix(f"{self.prefix}:")

    def tag(self, tenant: str, tag: str) -> str:
        """The sorted set of a tenant's jobs carrying ``tag``, by when each could first run.

        Also built in ``lua/_prelude.lua`` (``create_record``) and ``lua/trim_tags.lua``.
        """
        return f"{self.prefix}:tag:{tenant}:{tag}"

    def tags(self, tenant: str) -> str:
        """The set of the tags a tenant's jobs carry (what the tag trim visits; also built in ``lua/``)."""
        return f"{self.prefix}:tags:{tenant}"

    def feed(self, tenant: str) -> str:
        """The stream of a tenant's job changes, about the last 10,000 (``GET /v1/events``; built in ``lua/``)."""
        return f"{self.prefix}:feed:{tenant}"

    def events(self, job_id: str) -> str:
        """The pub/sub channel a job's changes are published on (also built in ``lua/``)."""
        return f"{self.prefix}:events:{job_id}"

    def aborted(self, job_id: str) -> str:
        """The tombstone of a job withdrawn by its publisher (also built in ``lua/abort.lua``, ``lua/start.lua``)."""
        return f"{self.prefix}:aborted:{job_id}"

    def idem(self, tenant: str, idempotency_key: str) -> str:
        """The job id a tenant's idempotency key was first used for (handed whole to ``lua/create.lua``)."""
        return f"{self.prefix}:idem:{tenant}:{idempotency_key}"

    # The janitor's.

    def stalled(self, job_id: str, attempt: int | str) -> str:
        """The claim on a stalled attempt of a job, taken once across all processes."""
        return f"{self.prefix}:stalled:{job_id}:{attempt}"

    @property
    def trim_lock(self) -> str:
        """The lock of the one process trimming the indexes."""
        return f"{self.prefix}:trim-lock"

    @property
    def migrate_lock(self) -> str:
        """The lock of the one process migrating the layout."""
        return f"{self.prefix}:migrate-lock"

    @property
    def layout(self) -> str:
        """The layout the store has been migrated to."""
        return f"{self.prefix}:layout"

    def dead_letter(self, message_id: str) -> str:
        """Why a message with no record was dead-lettered; a long id (any publisher picks them) is hashed."""
        name = message_id if len(message_id) <= _MAX_NAMED_ID else hashlib.sha256(message_id.encode()).hexdigest()
        return f"{self.prefix}:dead-letter:{name}"

    # Flows, batches, uploads and side effects.

    @property
    def batches(self) -> str:
        """The sorted set of recent batch ids by creation time (the admin page's)."""
        return f"{self.prefix}:batches"

    def flow(self, flow_id: str) -> str:
        """The hash of one flow: tenant, state, nodes pending, its nodes' names and job ids.

        Also built in ``lua/_prelude.lua`` (the flows section) and ``lua/flow_*.lua``.
        """
        return f"{self.prefix}:flow:{flow_id}"

    def flow_ended(self, flow_id: str) -> str:
        """The set of a flow's node jobs whose ending its fan-in counted (also built in ``lua/_prelude.lua``)."""
        return f"{self.flow(flow_id)}:ended"

    def flow_events(self, flow_id: str) -> str:
        """The pub/sub channel of a flow's changes (also built in ``lua/_prelude.lua``)."""
        return f"{self.prefix}:flow-events:{flow_id}"

    def upload(self, upload_id: str) -> str:
        """The hash of one upload's record."""
        return f"{self.prefix}:upload:{upload_id}"

    def effect(self, kind: str, job_id: str) -> str:
        """A job's marker (a string) or journal (a hash) of one kind of side effect."""
        return f"{self.prefix}:effect:{kind}:{job_id}"

    def webhook_gone(self, tenant: str, url: str) -> str:
        """The flag of a tenant's webhook endpoint that answered 410 Gone (the URL is hashed)."""
        return f"{self.prefix}:webhook-gone:{tenant}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"

    def webhook_secret(self, tenant: str) -> str:
        """The hash of a tenant's webhook signing secrets (current, previous, rotated_at)."""
        return f"{self.prefix}:webhook-secret:{tenant}"

    # Web push.

    def push_subscriptions(self, tenant: str, user_id: str) -> str:
        """The hash of a user's push subscriptions: subscription id → its JSON."""
        return f"{self.prefix}:push:subs:{tenant}:{user_id}"

    def push_owners(self, tenant: str) -> str:
        """The hash of a tenant's push subscriptions: subscription id → the user it is filed under."""
        return f"{self.prefix}:push:owners:{tenant}"

    @property
    def push_public_key(self) -> str:
        """The VAPID public key the push workers sign with, as they registered it."""
        return f"{self.prefix}:push:vapid-public-key"

    # Bulk operations (issue 22).

    def operation(self, operation_id: str) -> str:
        """The hash of one bulk operation: its action, filter, tenant, progress and state."""
        return f"{self.prefix}:operation:{operation_id}"

    def operation_jobs(self, operation_id: str) -> str:
        """The list of the job ids a bulk operation matched when it began, in the order it acts on them."""
        return f"{self.operation(operation_id)}:jobs"

    def operation_lease(self, operation_id: str) -> str:
        """The lease of the process running a bulk operation (it lapses if that process dies)."""
        return f"{self.operation(operation_id)}:lease"

    # Limits shared by every process.

    def breaker(self, host: str) -> tuple[str, str, str]:
        """The circuit breaker of a host: its failure count, its open flag and its tripped-lately flag."""
        base = f"{self.prefix}:breaker:{host}"
        return f"{base}:failures", f"{base}:open", f"{base}:tripped"

    def quota(self, name: str, tenant: str, window_start: int) -> str:
        """The units a tenant used of quota ``name`` in the window starting at ``window_start`` (epoch s)."""
        return f"{self.prefix}:quota:{name}:{tenant}:{window_start}"

    def slots(self, key: str) -> str:
        """The sorted set of jobs holding a slot of concurrency key ``key``, by lease end."""
        return f"{self.prefix}:slots:{key}"

    def slots_waiting(self, key: str) -> str:
        """The sorted set of jobs waiting for a slot of concurrency key ``key``, oldest first."""
        return f"{self.slots(key)}:waiting"

    @property
    def slots_with_waiters(self) -> str:
        """The set of concurrency keys that have waiting jobs."""
        return f"{self.prefix}:slots-waiting"

    def tenant_rate(self, tenant: str) -> str:
        """A tenant's request-rate bucket (GCRA; also built in ``lua/tenant_rate.lua``)."""
        return f"{self.prefix}:rate:{tenant}"

    def send_rate(self, name: str) -> str:
        """The base of a send rate's window counters (Dramatiq's ``WindowRateLimiter`` adds ``@<second>``)."""
        return f"{self.prefix}:send-rate:{name}"

    @property
    def paused(self) -> str:
        """The hash of paused queues and job types, by target (also built in ``pauses.py``'s script)."""
        return f"{self.prefix}:paused"

    def parked(self, target: str) -> str:
        """The sorted set of jobs parked under a paused target (also built in ``pauses.py``'s script)."""
        return f"{self.prefix}:parked:{target}"

    @property
    def parked_targets(self) -> str:
        """The set of targets that have parked jobs (also built in ``pauses.py``'s script)."""
        return f"{self.prefix}:parked-targets"

    # The job-type catalogue.

    @property
    def catalogue(self) -> str:
        """The hash of registered cards by job type."""
        return f"{self.prefix}:catalogue"

    @property
    def catalogue_version(self) -> str:
        """The counter bumped on every change of the catalogue."""
        return f"{self.catalogue}:version"

    def catalogue_workers(self, name: str) -> str:
        """The sorted set of a type's workers by last heartbeat (also built in ``catalogue.py``'s script)."""
        return f"{self.catalogue}:workers:{name}"

    # The scheduler.

    @property
    def scheduler_leader(self) -> str:
        """The scheduler's leader lock."""
        return f"{self.prefix}:scheduler:leader"

    def scheduler_last(self, name: str) -> str:
        """The last tick of schedule ``name`` that was handled."""
        return f"{self.prefix}:scheduler:last:{name}"

    @property
    def scheduler_ran(self) -> str:
        """The hash of each schedule's last tick enqueued."""
        return f"{self.prefix}:scheduler:ran"

    @property
    def scheduler_missed(self) -> str:
        """The hash of each schedule's ticks missed."""
        return f"{self.prefix}:scheduler:missed"

    def user_schedule(self, schedule_id: str) -> str:
        """The hash of one schedule a tenant made (``user_schedules.py``)."""
        return f"{self.prefix}:schedule:{schedule_id}"

    @property
    def user_schedules(self) -> str:
        """The set of every tenant-made schedule's id."""
        return f"{self.prefix}:schedules"

    def user_schedules_of(self, tenant: str) -> str:
        """The set of the ids of ``tenant``'s schedules."""
        return f"{self.prefix}:schedules:tenant:{tenant}"

    # Hourly statistics.

    def stats(self, hour: str) -> str:
        """The hash of one hour's statistics; ``hour`` is its start, ISO 8601 in UTC."""
        return f"{self.prefix}:stats:{hour}"

    @property
    def stats_hours(self) -> str:
        """The sorted set of the hours that have statistics."""
        return f"{self.prefix}:stats:hours"

    # The API's access rules.

    def bad_keys(self, address: str, minute: int) -> str:
        """The failed API-key checks of a client address in one minute (since the epoch)."""
        return f"{self.prefix}:authfail:{address}:{minute}"

    def signin_failures(self, kind: str, subject: str) -> str:
        """The run of failed admin sign-ins of a subject (an address, a key prefix's hash)."""
        return f"{self.prefix}:signin:failures:{kind}:{subject}"

    def signin_wait(self, kind: str, subject: str) -> str:
        """The flag making a subject wait before its next admin sign-in."""
        return f"{self.prefix}:signin:wait:{kind}:{subject}"

    def admin_session(self, sid: str) -> str:
        """One admin page session's data."""
        return f"{self.prefix}:admin-session:{sid}"

    # Managed API keys and the audit log (``api_keys.py``, ``audit.py``).

    def api_key(self, key_id: str) -> str:
        """The hash of one managed API key: its grant, times and the SHA-256 of its secret(s)."""
        return f"{self.prefix}:apikey:{key_id}"

    @property
    def api_keys(self) -> str:
        """The sorted set of every managed API key's id, by creation (ms)."""
        return f"{self.prefix}:apikeys"

    @property
    def api_keys_version(self) -> str:
        """The counter bumped by every change of a managed key; API processes watch it."""
        return f"{self.prefix}:apikeys:version"

    @property
    def audit(self) -> str:
        """The stream of admin actions (the audit log)."""
        return f"{self.prefix}:audit"

    @property
    def audit_exported(self) -> str:
        """The id of the last audit entry ``maintenance.cleanup`` exported."""
        return f"{self.prefix}:audit:exported"
