"""A process the fault tests start and break: ``python -m tests.faults.actor MODE VAR [ARGS]``.

observe VAR COUNT [CALLBACK]: add COUNT durable observers of VAR, print "ref <ref>" for each.
notify VAR RATE SECONDS [atomic|durable|durable-retrying|plain|own]: notify VAR RATE times a second,
    print "sent <id>" for each notification it returned (inside atomic(), printed after commit, unless
    plain or own; durable-retrying prints "failed <error>" for a transaction the database refused);
    then "done slowest_ms=<ms>" (its slowest call). "own" first adds 2 observers bound to its
    process_owner() (printed "ref <ref>").
reset -: delete every observer and outbox row. stats -: print get_stats() as JSON.
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
    elif mode == "reset":  # a new scene: no observer or outbox row of an earlier one
        from observers_app.models import Observer, OutboxMessage

        Observer.objects.all().delete()
        OutboxMessage.objects.all().delete()
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
