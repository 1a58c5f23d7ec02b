"""A private RabbitMQ node and a private PostgreSQL cluster that fault tests may stop, kill and restart.

The shared broker (5672) and database (5432) serve other test runs: they are never touched here.
The node runs like scripts/rabbitmq-local-cluster.sh's (its own node name, ports, state and cookie);
the cluster is a Debian ``pg_createcluster`` cluster (as root, as CI runs) or an ``initdb`` one.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
RABBIT_PORT = 5674
RABBIT_DIST_PORT = 25674
PG_PORT = 5434
PG_CLUSTER = "observers_faults"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, *, is_open: bool, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port) != is_open:
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} did not {'open' if is_open else 'close'} within {timeout} s")
        time.sleep(0.2)


class PrivateRabbit:
    """One RabbitMQ node on 127.0.0.1:5674, its state under ``base``."""

    url = f"amqp://guest:guest@127.0.0.1:{RABBIT_PORT}//"
    node = "observers-faults@localhost"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.env_file = base / "env.conf"
        self.pid_file = base / "pid"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "RABBITMQ_CONF_ENV_FILE": str(self.env_file), "HOME": str(self.base / "home")}

    def _write_config(self) -> None:
        for sub in ("mnesia", "log", "home"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{RABBIT_PORT}\n")
        self.env_file.write_text(
            f"NODENAME={self.node}\nNODE_PORT={RABBIT_PORT}\nDIST_PORT={RABBIT_DIST_PORT}\n"
            f"CONFIG_FILE={self.base / 'rabbitmq.conf'}\nMNESIA_BASE={self.base / 'mnesia'}\n"
            f"LOG_BASE={self.base / 'log'}\nENABLED_PLUGINS_FILE={self.base / 'enabled_plugins'}\n"
            f"PID_FILE={self.pid_file}\nERL_EPMD_ADDRESS=127.0.0.1\n"
        )

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start the node (its Erlang VM too) and wait until it takes connections."""
        self._write_config()
        subprocess.run(
            [str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self._env(), check=True, timeout=60
        )
        deadline = time.monotonic() + 90
        while True:  # a node is unknown to epmd for its first seconds
            try:
                self.ctl("await_startup", "--timeout", "10")
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        wait_port(RABBIT_PORT, is_open=True)

    def stop_app(self) -> None:
        """The broker goes away (connections refused); its Erlang VM stays, for start_app."""
        self.ctl("stop_app")
        wait_port(RABBIT_PORT, is_open=False)

    def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` now."""
        done = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "-q", "list_queues", "name", "messages"],
            env=self._env(),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        depths = dict(line.split("\t")[:2] for line in done.stdout.splitlines() if "\t" in line)
        return int(depths.get(queue, 0))

    def set_memory_alarm(self, on: bool) -> None:
        """A memory alarm, as a broker out of memory raises it: every publishing connection is blocked."""
        self.ctl("set_vm_memory_high_watermark", "0.000001" if on else "0.4")

    def start_app(self) -> None:
        self.ctl("start_app")
        wait_port(RABBIT_PORT, is_open=True)

    def kill(self) -> None:
        """``kill -9`` of the broker's Erlang VM: no goodbye to any client."""
        os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)
        wait_port(RABBIT_PORT, is_open=False)

    def shutdown(self) -> None:
        """Stop the node whatever state it is in, and remove its state."""
        try:
            self.ctl("shutdown")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if self.pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster on 127.0.0.1:5434 with trust authentication for local connections."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.version = sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else ""
        self.debian = os.geteuid() == 0 and bool(shutil.which("pg_createcluster"))

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{PG_PORT}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        if self.debian:
            command = ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, PG_CLUSTER, *args]
        else:
            pg_ctl = f"/usr/lib/postgresql/{self.version}/bin/pg_ctl"
            command = [pg_ctl, "-D", str(self.base / "data"), "-l", str(self.base / "log"), "-w", *args]
            if args[0] in ("stop", "restart"):
                command += ["-m", "fast"]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self.debian:
            listed = subprocess.run(["pg_lsclusters", "-h"], check=True, capture_output=True, text=True)
            if not any(line.split()[:2] == [self.version, PG_CLUSTER] for line in listed.stdout.splitlines()):
                subprocess.run(
                    ["pg_createcluster", self.version, PG_CLUSTER, "--port", str(PG_PORT), "--",
                     "--auth-local=trust", "--auth-host=trust"],
                    check=True, capture_output=True, timeout=120,
                )  # fmt: skip
        elif not (self.base / "data").exists():
            initdb = f"/usr/lib/postgresql/{self.version}/bin/initdb"
            subprocess.run(
                [initdb, "-D", str(self.base / "data"), "-U", "postgres", "--auth=trust"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            with open(self.base / "data" / "postgresql.conf", "a") as conf:
                conf.write(
                    f"port = {PG_PORT}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                )
        if not port_open(PG_PORT):
            self._pg_ctl("start")
        wait_port(PG_PORT, is_open=True)

    def restart(self) -> None:
        """A fast restart: every session is cut, as in ``pg_ctlcluster ... restart``."""
        self._pg_ctl("restart")
        wait_port(PG_PORT, is_open=True)

    def stop(self) -> None:
        if port_open(PG_PORT):
            self._pg_ctl("stop")


class Partition:
    """A TCP relay on a loopback port to 127.0.0.1:``target``: ``cut()`` drops every connection through
    it and refuses new ones, as a network partition cuts one process off (from the database, say)
    while the others reach it; ``heal()`` lets connections through again."""

    def __init__(self, target: int) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.listener: socket.socket | None = None

    def heal(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            doomed, self.open = self.open, set()
        for sock in [listener, *doomed]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                if self.listener is not listener:
                    client.close()
                    server.close()
                    return
                self.open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self.lock:
                self.open.discard(source)
            source.close()
