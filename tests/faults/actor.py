"""A process the fault tests start and break: ``python -m tests.faults.actor MODE VAR [ARGS]``.

observe VAR COUNT [CALLBACK]: add COUNT durable observers of VAR, print "ref <ref>" for each.
observe-bulk VAR COUNT [CALLBACK]: the same in one add_observers call.
webhook VAR URL: add a webhook observer of VAR, print "ref <ref>". token VAR: print "token <token>"
    for a stream of VAR. inspect VAR: print "observer <ref> <failures> <quarantined>" for each observer.
park-retries REF COUNT: park COUNT webhook retries of observer REF, due now, print "sent <message id>".
release-retries -: send the parked webhook retries now due (the sweep's step), print "released <n>".
attempts REF: print "attempt <n> <status> <error as JSON>" for each attempt kept of webhook observer REF.
notify VAR RATE SECONDS [atomic|durable|durable-retrying|plain|own]: notify VAR RATE times a second,
    print "sent <id>" for each notification it returned (inside atomic(), printed after commit, unless
    plain or own; durable-retrying prints "failed <error>" for a transaction the database refused);
    then "done slowest_ms=<ms>" (its slowest call). "own" first adds 2 observers bound to its
    process_owner() (printed "ref <ref>").
reset -: delete every observer, outbox row, dead letter and counter. stats -: print get_stats() as JSON.
declare -: declare the hub's queues.
sweep VAR: run the sweep once, print what it removed.
count VAR: print observer_count(VAR).
hold VAR COUNT: notify VAR COUNT times as fast as it can, print "held", then sleep (until SIGTERM).
commit-and-die VAR COUNT: COUNT rounds of a durable notification rolled back (printed
    "rolledback <id>") then one committed (printed "sent <id>"); SIGKILLs itself right after the
    last commit.
"""

import json
import os
import signal
import sys
import time
import uuid

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.db import Error, transaction

    from observers_app import manager

    mode, var_id = sys.argv[1], sys.argv[2]

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    if mode == "observe":
        callback = sys.argv[4] if len(sys.argv) > 4 else "tests.append_line"
        for _ in range(int(sys.argv[3])):
            say(f"ref {manager.add_observer(var_id, callback)}")
    elif mode == "observe-bulk":
        callback = sys.argv[4] if len(sys.argv) > 4 else "tests.append_line"
        for ref in manager.add_observers([var_id] * int(sys.argv[3]), callback):
            say(f"ref {ref}")
    elif mode == "webhook":
        say(f"ref {manager.add_webhook(var_id, sys.argv[3])}")
    elif mode == "token":
        say(f"token {manager.issue_token([var_id])}")
    elif mode == "inspect":
        for observer in manager.inspect_variable(var_id)["observers"]:
            say(f"observer {observer['ref']} {observer['failures']} {observer['quarantined']}")
    elif mode == "release-retries":
        from observers_app.webhooks import attempts

        try:
            say(f"released {attempts.release_due_retries(batch_size=1000)}")
        except Exception as exc:  # what the rows held is gone if they were deleted first
            say(f"failed {type(exc).__name__}")
    elif mode == "attempts":
        from observers_app.models import WebhookAttempt

        for attempt in WebhookAttempt.objects.filter(endpoint_id=uuid.UUID(var_id)).order_by("id"):
            say(f"attempt {attempt.attempt} {attempt.status_code} {json.dumps(attempt.error)}")
    elif mode == "park-retries":
        from datetime import timedelta

        from django.utils import timezone

        from observers_app.models import WebhookRetry

        for n in range(int(sys.argv[3])):
            message_id = f"msg_parked_{n}_{time.time_ns()}"
            WebhookRetry.objects.create(
                endpoint_id=uuid.UUID(var_id),
                message_id=message_id,
                body=json.dumps({"data": {"metadata": {"notification_id": message_id}}}),
                attempt=2,
                due_at=timezone.now() - timedelta(seconds=1),
            )
            say(f"sent {message_id}")
    elif mode == "notify":
        rate, seconds = float(sys.argv[3]), float(sys.argv[4])
        how = sys.argv[5] if len(sys.argv) > 5 else "atomic"
        if how == "own":  # observers of its own, bound to process_owner()
            for _ in range(2):
                say(f"ref {manager.add_observer(var_id, 'tests.append_line', owner=manager.process_owner())}")
        started = time.monotonic()
        n, slowest = 0, 0.0
        while time.monotonic() - started < seconds:
            call_started = time.perf_counter()
            if how == "durable-retrying":  # the database may be down: what did not commit is not sent
                try:
                    with transaction.atomic():
                        notification_id = manager.notify_observers(var_id, None, n, durable=True)
                except Error as exc:  # OperationalError, InterfaceError (a closed connection)
                    say(f"failed {type(exc).__name__}")
                    n += 1
                    time.sleep(0.05)
                    continue
            elif how in ("atomic", "durable"):
                with transaction.atomic():  # timed with its commit, where the message is handed over
                    notification_id = manager.notify_observers(var_id, None, n, durable=how == "durable")
            else:
                notification_id = manager.notify_observers(var_id, None, n)
            slowest = max(slowest, time.perf_counter() - call_started)
            say(f"sent {notification_id}")
            n += 1
            time.sleep(max(0.0, n / rate - (time.monotonic() - started)))
        say(f"done slowest_ms={slowest * 1000:.1f}")
    elif mode == "sweep":
        say(f"swept {manager.sweep()}")
    elif mode == "reset":  # a new scene: no observer, outbox row, dead letter or count of an earlier one
        from observers_app.models import (
            DeadLetter,
            MessageAttempt,
            Observer,
            OutboxMessage,
            StatCounter,
            WebhookEndpoint,
        )

        for model in (WebhookEndpoint, Observer, OutboxMessage, DeadLetter, MessageAttempt, StatCounter):
            model.objects.all().delete()
    elif mode == "declare":
        from observers_app.publishing import backpressure

        backpressure.declare_queues()
    elif mode == "stats":
        say(f"stats {json.dumps(manager.get_stats())}")
    elif mode == "count":
        say(f"count {manager.observer_count(var_id)}")
    elif mode == "hold":
        for n in range(int(sys.argv[3])):
            say(f"sent {manager.notify_observers(var_id, None, n)}")
        say("held")
        time.sleep(600)
    elif mode == "commit-and-die":
        for n in range(int(sys.argv[3])):
            try:
                with transaction.atomic():
                    rolled_back = manager.notify_observers(var_id, None, -n - 1, durable=True)
                    raise RuntimeError("rolled back on purpose")
            except RuntimeError:
                say(f"rolledback {rolled_back}")
            with transaction.atomic():
                committed = manager.notify_observers(var_id, None, n, durable=True)
            say(f"sent {committed}")
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
