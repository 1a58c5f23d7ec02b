"""Starts and stops a real Celery worker process, for the tests (the demo and benchmarks import it too)."""

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READY_TIMEOUT_S = 60.0


@contextmanager
def running_worker(
    *,
    concurrency: int = 2,
    include: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    hostname: str | None = None,
    nice: int = 0,
    queues: tuple[str, ...] = (),
    extra_args: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A project worker`` (prefork) until the block exits, then shut it down warmly;
    ``nice`` lowers its CPU priority (its pool processes inherit it); ``queues`` are consumed besides
    the hub's (then not the host's default queue, which others on this host may share)."""
    log_path = log_path or Path(tempfile.mkstemp(prefix="observers-worker-", suffix=".log")[1])
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "project",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        # The dedicated hub worker's tuning (docs/install.md): dispatch batches of up to 50 need
        # several prefetched messages per pool process.
        "--prefetch-multiplier",
        "100",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
        "--hostname",
        hostname or f"observers-{uuid.uuid4().hex[:8]}@%h",
    ]
    command += extra_args
    if include:
        command += ["--include", ",".join(include)]
    if queues:
        from observers_app import wiring

        command += ["--queues", ",".join([queue.name for queue in wiring.consumed_queues()] + list(queues))]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_ready(process, log_path)
        yield process
    finally:
        stop_worker(process)


def _wait_until_ready(process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if b" ready." in log_path.read_bytes():
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_worker(process)
    raise RuntimeError(
        f"Celery worker did not start; its log:\n{log_path.read_text(errors='replace')[-4000:]}"
    )


def stop_worker(process: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """SIGTERM (a warm shutdown that finishes running tasks), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def purge_task_queue() -> None:
    """Start the hub's queues afresh (deleted, then declared as configured), so a new worker starts
    on no stale messages and on the current queue arguments."""
    from observers_app.publishing import backpressure

    backpressure.delete_queues()
    backpressure.declare_queues()
