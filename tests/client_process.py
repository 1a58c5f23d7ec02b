"""A separate process for the tests: ``python -m tests.client_process MODE VAR COUNT [EXTRA [PAUSE]]``.

hold: bind COUNT observers to process_owner(), print "ready", sleep until killed.
exit: the same, then exit normally.
churn: add COUNT durable observers to VAR, remove half, notify the variable EXTRA ten times.
sets: set the session variable VAR (session id, name "x") COUNT times to "EXTRA:<i>" (pausing PAUSE s).
notify: notify VAR once (0 -> 1), print "ready"; once a line comes on stdin, notify it COUNT more times
    (i -> i + 1, a millisecond apart), then print the JSON list of [i, wall time the notify began].
distinct: the same, each notify to a name of its own, never notified before ("VAR:<i>", 0 -> i),
    "ready" once the process's view of the observed names answers.
"""

import json
import os
import sys
import time

import django


def main() -> None:
    mode, var_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from observers_app import manager
    from tests.testapp.callbacks import record

    if mode == "sets":
        from observers_app.sources import sessions

        pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
        for i in range(count):
            sessions.set_variable(var_id, "x", f"{sys.argv[4]}:{i}")
            time.sleep(pause)
        print("ready done", flush=True)
        return
    if mode == "notify":
        notify_until_told(var_id, count)
        return
    if mode == "distinct":
        notify_until_told(var_id, count, distinct=True)
        return
    if mode in ("hold", "exit"):
        owner = manager.process_owner()
        for _ in range(count):
            manager.add_observer(var_id, record, owner=owner)
        print(f"ready {owner.id}", flush=True)
        if mode == "hold":
            time.sleep(120)
        return
    refs = [manager.add_observer(var_id, record) for _ in range(count)]
    for ref in refs[: count // 2]:
        assert manager.remove_observer(var_id, ref)
    for i in range(10):
        manager.notify_observers(sys.argv[4], i, i + 1)
    print(f"ready {os.getpid()}", flush=True)


def notify_until_told(var_id: str, more: int, *, distinct: bool = False) -> None:
    from observers_app import manager
    from observers_app.publishing import buffer, view

    began: list[tuple[int, float]] = []

    def notify() -> None:
        began.append((len(began), time.time()))
        if distinct:
            manager.notify_observers(f"{var_id}:{len(began) - 1}", 0, len(began) - 1)
        else:
            manager.notify_observers(var_id, len(began) - 1, len(began))

    notify()
    if distinct:
        names = view.current()
        assert names is not None, "views are off"
        deadline = time.monotonic() + 30
        while names.answer(var_id) is None and time.monotonic() < deadline:
            time.sleep(0.01)
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.readline()
    for _ in range(more):
        notify()
        time.sleep(0.001)
    # The messages are published by the outbox thread: out before the test may kill this process.
    buffer.flush()
    print(json.dumps(began), flush=True)


if __name__ == "__main__":
    main()
