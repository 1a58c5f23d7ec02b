"""The fault suite's private broker and database, and the processes each test starts and breaks."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.worker_process import running_worker

from .services import PrivatePostgres, PrivateRabbit, port_open

DATABASE = "observers_faults"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def private_services() -> Iterator[None]:
    """One fault run at a time on this machine: the private broker and database have fixed ports
    and a fixed node name, so a second run waits here for the first to end."""
    with open(Path(tempfile.gettempdir()) / "observers-faults-services.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def rabbit(private_services: None) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(Path(tempfile.mkdtemp(prefix="observers-faults-rabbit-")))
    try:
        node.start()
        yield node
    finally:
        node.shutdown()


@pytest.fixture(scope="session")
def postgres(private_services: None) -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres(Path(tempfile.mkdtemp(prefix="observers-faults-pg-")))
    try:
        cluster.start()
        for sql in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}"):
            subprocess.run(
                ["psql", cluster.url("postgres"), "-v", "ON_ERROR_STOP=1", "-qc", sql],
                check=True,
                capture_output=True,
            )
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Scene:
    """One fault test's world: its queue, its environment, its callback log; counts the pairs."""

    env: dict[str, str]
    log: Path
    refs: dict[str, list[str]] = field(default_factory=dict)
    sent: dict[str, list[str]] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120.0) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "tests.faults.actor", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode not in (0, -9):
            raise AssertionError(f"actor {args} failed:\n{done.stderr[-4000:]}")
        return done.stdout.splitlines()

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.faults.actor", *args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    def observe(
        self, var_id: str, count: int, callback: str = "tests.append_line", *, bulk: bool = False
    ) -> None:
        lines = self.run("observe-bulk" if bulk else "observe", var_id, str(count), callback)
        self.refs[var_id] = [line.split()[1] for line in lines if line.startswith("ref ")]

    def expect(self, var_id: str, lines: list[str]) -> None:
        """Count the notifications an actor printed as sent (committed) for ``var_id``."""
        self.sent.setdefault(var_id, []).extend(sent_ids(lines))

    def printed(self, key: str, *args: str) -> list[str]:
        """What an actor printed as ``<key> <value>`` lines: the values."""
        return [line.split()[1] for line in self.run(*args) if line.startswith(f"{key} ")]

    @contextmanager
    def worker(self, **env: str) -> Iterator[subprocess.Popen[bytes]]:
        with running_worker(concurrency=2, env={**self.env, **env}) as process:
            yield process

    @contextmanager
    def web(self, **env: str) -> Iterator[str]:
        """The example project under uvicorn (streams), on a free loopback port; yields its base URL."""
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1"]
        process = subprocess.Popen(
            [*command, "--port", str(port), "--no-access-log", "--lifespan", "off"],
            env={**self.env, **env},
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: port_open(port), timeout=60, interval=0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def sent_from_callbacks(self) -> list[str]:
        """The "sent <id>" lines callbacks that notify (tests.relay) wrote to the log."""
        return [line for line in self.records() if line.startswith("sent ")]

    def stats(self) -> dict[str, int]:
        [line] = [line for line in self.run("stats", "-") if line.startswith("stats ")]
        return dict(json.loads(line.split(" ", 1)[1]))

    def records(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def count(self) -> dict[str, int]:
        """Pairs expected, delivered (distinct), lost, duplicated, and delivered but never expected."""
        expected = {
            f"{ref} {nid}" for var_id, nids in self.sent.items() for ref in self.refs[var_id] for nid in nids
        }
        records = [line for line in self.records() if not line.startswith("sent ")]
        delivered = set(records)
        return {
            "expected": len(expected),
            "delivered": len(delivered & expected),
            "lost": len(expected - delivered),
            "duplicates": len(records) - len(delivered),
            "unexpected": len(delivered - expected),
        }

    def all_delivered(self) -> bool:
        return self.count()["lost"] == 0


@pytest.fixture
def scene(rabbit: PrivateRabbit, postgres: PrivatePostgres, tmp_path: Path) -> Iterator[Scene]:
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": postgres.url(DATABASE),
        "CELERY_BROKER_URL": rabbit.url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "OBSERVERS_QUEUE": queue,
        # The tests' 1,000 (for the backpressure test) would shed what a fault holds back: not a loss.
        "OBSERVERS_QUEUE_MAX_LENGTH": "1000000",
        "OBSERVERS_FAULTS_LOG": str(tmp_path / "records.log"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], env=env, cwd=ROOT, check=True, timeout=300
    )
    scene = Scene(env=env, log=tmp_path / "records.log")
    scene.run("reset", "-")
    yield scene


def report(name: str, counts: Mapping[str, float]) -> None:
    """One line per fault for docs/faults.md (printed with -s, and kept in faults-results.txt)."""
    line = f"{name}: " + " ".join(f"{key}={value}" for key, value in counts.items())
    print(line)
    with open(ROOT / "faults-results.txt", "a") as results:
        results.write(line + "\n")


def sent_ids(lines: list[str]) -> list[str]:
    """The notification ids an actor printed as sent."""
    return [line.split()[1] for line in lines if line.startswith("sent ")]


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (a worker's pool processes)."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listed:
            found.update(int(child) for child in listed.read().split())
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (a worker and its pool processes), children first found."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(child) for child in children.read().split()]
        except FileNotFoundError:
            continue
    for each in pids:
        with suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)
