"""Tables: owners, observers, removals, per-variable notification state, and the global counters."""

import json
import uuid
from typing import Any

from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Concat, Left, StrIndex
from django.utils import timezone

from .db import new_epoch_sql
from .querysets import ObserverQuerySet, OwnerQuerySet

VAR_ID_MAX_LENGTH = 255
# First key of the two-key PostgreSQL advisory locks that keep process owners alive.
OWNER_LOCK_NAMESPACE = 0x0B5E
# The two-key advisory lock between adds (shared, to their commit) and a view's registration (exclusive).
PRESENCE_LOCK = (0x0B5F, 0)


class JSONTextField(models.TextField):
    """JSON kept as the text it was written as. PostgreSQL's jsonb holds numbers as numeric: a float
    such as 1e16 would come back as the int 10000000000000000 and -0.0 as 0, and the hub tells 1 from
    1.0 (an unchanged value is the same canonical JSON)."""

    _pyi_private_set_type: Any  # django-stubs: any JSON value in, any JSON value out
    _pyi_private_get_type: Any

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        return None if value is None else json.loads(value)

    def get_prep_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), allow_nan=False)


class NewEpoch(models.Func):
    """A fresh random epoch, drawn by the database: the default of a variable's state, so that a state
    created again (its numbering restarted) never has the epoch of the one before it."""

    output_field = models.CharField()
    template = f"({new_epoch_sql('sqlite')})"

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, template=f"({new_epoch_sql('postgresql')})", **extra_context)


class Owner(models.Model):
    """A process or a lease that observers can belong to; its death removes them.

    Alive while not closed and either its lease has not expired (``expires_at``) or, on
    PostgreSQL, its process still holds the session advisory lock ``lock_key``.
    """

    class Kind(models.TextChoices):
        PROCESS = "process"
        LEASE = "lease"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    lock_key = models.IntegerField(null=True, blank=True, unique=True)
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    dead_since = models.DateTimeField(
        null=True, blank=True, help_text="When the sweep first found it dead (cleared if it came back)."
    )

    objects = OwnerQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class HeldLock(models.Model):
    """A view of the owner advisory locks PostgreSQL holds right now (empty on SQLite)."""

    lock_key = models.IntegerField(primary_key=True)

    class Meta:
        managed = False
        db_table = "observers_app_heldlock"

    def __str__(self) -> str:
        return str(self.lock_key)


class Observer(models.Model):
    """One callback registered on one variable; its primary key is the ref add_observer returns."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    var_id = models.CharField(
        max_length=VAR_ID_MAX_LENGTH, help_text="A variable name, or a glob if is_glob."
    )
    is_glob = models.BooleanField(
        default=False, help_text="var_id is a pattern; * matches any run of characters."
    )
    # The part of var_id before its first "*" (all of it when it has none), kept by the database:
    # only the globs whose prefix begins a name can match it, so a lookup fetches those alone.
    glob_prefix = models.GeneratedField(
        expression=Left(F("var_id"), StrIndex(Concat(F("var_id"), Value("*")), Value("*")) - 1),
        output_field=models.CharField(max_length=VAR_ID_MAX_LENGTH),
        db_persist=True,
    )
    callback = models.CharField(max_length=255, db_index=True, help_text="Registered callback name.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    failures = models.PositiveIntegerField(default=0, help_text="Failed calls in a row.")
    last_error = models.TextField(blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    coalesce = models.BooleanField(
        default=False, help_text="Latest value wins: intermediate notifications may collapse into the newest."
    )
    owner = models.ForeignKey(
        Owner, null=True, blank=True, on_delete=models.CASCADE, related_name="observers"
    )

    objects = ObserverQuerySet.as_manager()

    class Meta:
        indexes = [
            # Serves the existence check, counts and the keyset pages of a fan-out. On PostgreSQL
            # migration 0010 made it cover what a fan-out reads and filters on (INCLUDE), so a page
            # is an index-only scan; declared here without the covering columns, which only
            # PostgreSQL can use (0019), so that no other database warns about them.
            models.Index(fields=["var_id", "id"], name="observer_var_id_id_covering"),
            # The glob patterns by literal prefix: an existence check or a fan-out looks up the
            # prefixes of the name it has, and reads only the patterns that could match it.
            models.Index(
                fields=["glob_prefix", "var_id"],
                condition=models.Q(is_glob=True),
                name="observer_glob_prefix",
            ),
            # The coalescing observers, usually few: a fan-out wider than a page asks whether it has
            # any past its first page without reading every observer's index entry.
            models.Index(fields=["var_id"], condition=models.Q(coalesce=True), name="observer_coalescing"),
            # The few quarantined observers, for the admin's filter.
            models.Index(
                fields=["quarantined_at"],
                condition=models.Q(quarantined_at__isnull=False),
                name="observer_quarantined",
            ),
        ]
        # The hub's permissions for streams (docs/streams.md), checked as "observers_app.<codename>".
        permissions = [
            ("watch_variable", "Can watch variables over streams"),
            ("watch_wide_glob", "Can watch wide glob patterns over streams"),
        ]

    def __str__(self) -> str:
        return f"{self.callback} on {self.var_id}"


class PresenceView(models.Model):
    """A process's view of the observed names (publishing/view.py): while its lease holds, the process
    answers "no observer" from memory, and every add of an observer waits for it to learn the name or
    for its lease to end. Deleting the row (an add that could not tell it) makes it load again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="Renewed by the process while it listens for changes.")

    def __str__(self) -> str:
        return f"view {self.host}:{self.pid}"


class Removal(models.Model):
    """Why and when an observer went away: the answer to "where did my observer go?"."""

    class Reason(models.TextChoices):
        REMOVED = "removed"
        OWNER_CLOSED = "owner_closed"
        OWNER_DIED = "owner_died"
        SWEPT = "swept"
        QUARANTINED = "quarantined"

    observer_ref = models.UUIDField(db_index=True)
    var_id = models.CharField(max_length=VAR_ID_MAX_LENGTH)
    callback = models.CharField(max_length=255)
    owner_ref = models.UUIDField(null=True, blank=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True)
    removed_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.observer_ref}: {self.reason}"


class Variable(models.Model):
    """A session variable of the session store: a JSON value with a version bumped on every set."""

    session_id = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    value = JSONTextField(null=True)
    version = models.BigIntegerField(default=0)
    deleted = models.BooleanField(default=True, help_text="Deleted, or never set: the row keeps the version.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session_id", "name"], name="variable_session_name")]

    def __str__(self) -> str:
        return f"{self.session_id}:{self.name} v{self.version}"


class VariableState(models.Model):
    """A variable's notification sequence, last notification and observer count, and its history's
    epoch and floor."""

    var_id = models.CharField(max_length=VAR_ID_MAX_LENGTH, primary_key=True)
    seq = models.BigIntegerField(default=0, db_default=0)
    epoch = models.CharField(
        max_length=16,
        db_default=NewEpoch(),
        help_text="Changes whenever the variable's history can no longer be trusted complete.",
    )
    history_floor = models.BigIntegerField(
        default=0, db_default=0, help_text="The highest seq the sweep pruned from the history."
    )
    history_pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When the newest entry the sweep pruned was recorded."
    )
    last_notified_at = models.DateTimeField(null=True, blank=True)
    observer_count = models.BigIntegerField(
        default=0,
        db_default=0,
        db_index=True,
        help_text="Observer rows registered under this name, kept by every add and removal.",
    )

    def __str__(self) -> str:
        return f"{self.var_id} @ {self.seq}"


class HistoryEntry(models.Model):
    """One notification a worker dispatched, kept for ``history()``, stream resumes and replays."""

    var_id = models.CharField(max_length=VAR_ID_MAX_LENGTH)
    seq = models.BigIntegerField()
    notification_id = models.CharField(max_length=64)
    old_value = JSONTextField(null=True)
    new_value = JSONTextField(null=True)
    metadata = JSONTextField(null=True)
    at = models.DateTimeField(help_text="When a worker dispatched it (the database's clock).")
    observers = models.IntegerField(help_text="Observers registered on its name and matching globs.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["var_id", "seq"], name="historyentry_var_id_seq")]
        indexes = [models.Index(fields=["at"], name="historyentry_at")]
        verbose_name_plural = "history entries"

    def __str__(self) -> str:
        return f"{self.var_id} #{self.seq}"


class Latest(models.Model):
    """A variable's mailbox for its coalescing observers: the newest notification not yet delivered."""

    var_id = models.CharField(max_length=VAR_ID_MAX_LENGTH, primary_key=True)
    pending = JSONTextField(null=True, blank=True, help_text="The newest notification waiting.")
    collapsed = models.IntegerField(default=0, help_text="Notifications collapsed into the pending one.")
    delivered_value = JSONTextField(null=True, blank=True, help_text="The last new value delivered.")
    delivered_seq = models.BigIntegerField(default=0, help_text="The seq of the last notification delivered.")
    has_delivered = models.BooleanField(default=False)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A worker is delivering until then.")
    lease_holder = models.CharField(
        max_length=32, blank=True, help_text="The delivering worker's lease token."
    )

    def __str__(self) -> str:
        return f"latest of {self.var_id}"


class StatBucket(models.Model):
    """A counter's increase within one minute: the hub's own time series for the stats chart."""

    minute = models.DateTimeField()
    name = models.CharField(max_length=64)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["minute", "name"], name="statbucket_minute_name")]

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.name} = {self.value}"


class RevokedToken(models.Model):
    """A revoked stream token (``token_id``, kept until its expiry), or every token of a user issued
    up to ``revoked_at`` (``user_id``, one row per user)."""

    token_id = models.CharField(max_length=32, null=True, blank=True, unique=True)
    user_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    revoked_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"token {self.token_id}" if self.token_id else f"tokens of user {self.user_id}"


class StatCounter(models.Model):
    """A global counter, shared by every process and kept across restarts."""

    name = models.CharField(max_length=64, primary_key=True)
    value = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"


class Payload(models.Model):
    """A notification over 4 KiB of JSON whose fan-out spans several deliver pages, stored once: each
    page's message carries this row's id, never a copy of the values (a 250 KB value to 2,500
    observers would be copied into 10 messages; a smaller notification travels in the messages).
    Deleted when every page is delivered; the sweep prunes strays."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notification = models.TextField(
        help_text="The notification as JSON text (exact: jsonb would turn 1e16 into an int)."
    )
    pages = models.IntegerField(default=0, help_text="Deliver pages sent; 0 while they are being sent.")
    done = models.JSONField(default=list, help_text="The pages delivered, by their upper bound.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"payload {self.id}"


class OutboxMessage(models.Model):
    """A message the hub took on and the broker does not hold yet, deleted once it confirmed it: a
    durable notification's dispatch message, written in its caller's transaction (one its caller did not
    publish, it died, is published by a worker), or a deliver page the broker refused (a full queue)."""

    id = models.UUIDField(primary_key=True, help_text="The notification id, or the page's own id.")
    # The caller's hot-path insert names no task: a durable notification (wiring.DISPATCH_TASK).
    task = models.CharField(max_length=64, db_default="observers.dispatch", help_text="The Celery task.")
    args = models.TextField(help_text="The task's arguments, a JSON array.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"outbox {self.id}"


class MessageAttempt(models.Model):
    """How often a hub message failed by itself (it raised, or its worker process died running it), and
    its last error: its first failed run creates the row."""

    task_id = models.CharField(max_length=64, primary_key=True)
    deliveries = models.IntegerField(default=1)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.task_id}: {self.deliveries} failed runs"


class DeadLetter(models.Model):
    """A message parked after OBSERVERS_MAX_DELIVERIES runs that failed by themselves; replayable."""

    task_id = models.CharField(max_length=64, db_index=True)
    task = models.CharField(max_length=64)
    args = models.TextField(help_text="The task's arguments, a JSON array (replayed as they are).")
    deliveries = models.IntegerField()
    reason = models.TextField(blank=True, help_text="Its last error, if it raised one.")
    parked_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.task} {self.task_id}"


class WebhookEndpoint(models.Model):
    """The HTTP endpoint of a webhook observer: where its notifications are POSTed, and its health.

    Disabled is the observer's quarantine (``observer.quarantined_at``, the reason in ``last_error``).
    Removals delete it with its observer (observers.removals.remove_in_batches): a cascade here would
    make Django load every observer a removal deletes, webhook or not.
    """

    # The registered callback of every webhook observer (webhooks/callback.py).
    CALLBACK = "observers.webhook"

    observer = models.OneToOneField(
        Observer, primary_key=True, on_delete=models.DO_NOTHING, related_name="webhook"
    )
    url = models.URLField(max_length=2048)
    secret = models.CharField(max_length=128, help_text="The whsec_ signing secret; never shown again.")
    created_at = models.DateTimeField(default=timezone.now)
    failures = models.PositiveIntegerField(default=0, help_text="Failed attempts in a row.")
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="First failure since the last success."
    )
    last_success_at = models.DateTimeField(
        null=True, blank=True, help_text="Written at most once a minute while the endpoint stays healthy."
    )

    def __str__(self) -> str:
        return self.url


class WebhookAttempt(models.Model):
    """One POST of a message to an endpoint; the newest few per endpoint are kept."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="attempts")
    message_id = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField(help_text="1 for the first try of this message.")
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["endpoint", "-id"], name="webhookattempt_endpoint_newest")]

    def __str__(self) -> str:
        return f"{self.message_id} #{self.attempt}: {self.status_code or self.error}"


class WebhookRetry(models.Model):
    """A retry due later than a Celery countdown should wait: the sweep sends it when due."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="retries")
    message_id = models.CharField(max_length=64)
    body = models.TextField()
    attempt = models.PositiveIntegerField(help_text="The attempt it will be.")
    due_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.message_id} #{self.attempt} at {self.due_at}"
