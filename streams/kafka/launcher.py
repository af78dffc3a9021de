"""Run a real single-node Apache Kafka broker (KRaft) locally, without Docker.

The broker jars come from Maven Central via ``pom.xml`` (cached in ``~/.m2``), the JVM is
started detached so it outlives this process, and readiness is checked with real Kafka
protocol requests rather than by sleeping. Pure stdlib so it can run before the project's
dependencies are installed (CI bootstrap) and be loaded by path from the ``agentstream`` CLI.

    python infra/kafka/launcher.py up|down|status [--port 9092] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = REPO_ROOT / "infra" / "kafka"  # the broker's pom and config files
POM = HERE / "pom.xml"
SERVER_TEMPLATE = HERE / "server.properties"
LOG4J2_CONFIG = HERE / "log4j2.properties"

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
JVM_HEAP = "-Xmx512m"
MAVEN_TIMEOUT_S = 1800.0  # first run downloads ~100 MB of jars; not bounded by ``timeout_s``
LOG_TAIL_LINES = 40

Log = Callable[[str], Any]


# --------------------------------------------------------------------------- paths / state


def default_port() -> int:
    """Port from ``$AGENTSTREAM_KAFKA_PORT`` so CI and dev shells can move the broker."""
    return int(os.environ.get("AGENTSTREAM_KAFKA_PORT", DEFAULT_PORT))


def default_data_dir() -> Path:
    """``$AGENTSTREAM_KAFKA_DIR`` or ``<repo>/.data/kafka`` (git-ignored)."""
    env = os.environ.get("AGENTSTREAM_KAFKA_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".data" / "kafka"


class _Layout:
    """Files the launcher keeps in the data dir; one place so up/down/status agree."""

    def __init__(self, data_dir: Path | None) -> None:
        self.root = (data_dir or default_data_dir()).expanduser().resolve()
        self.kraft = self.root / "kraft"  # log.dirs: topic data + cluster metadata
        self.server_properties = self.root / "server.properties"
        self.state = self.root / "launcher.json"
        self.pid = self.root / "kafka.pid"
        self.lock = self.root / ".launcher.lock"
        self.server_log = self.root / "server.log"  # log4j2 output
        self.stdout_log = self.root / "stdout.log"  # JVM stdout/stderr (crashes, GC warnings)

    def read_state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.state.read_text())
            return state
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state)

    def read_pid(self) -> int | None:
        try:
            return int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    """Serialise up/down on one data dir (CI script and a test may race)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(layout.lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- processes


def _reap(pid: int) -> None:
    """Collect a dead child so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _cmdline(pid: int) -> list[bytes] | None:
    """argv of ``pid`` from procfs; None if the process is gone or a zombie.

    /proc/PID/cmdline is briefly empty while a process is exec'ing (seen right after the JVM
    starts), so an empty read is retried before it counts as "not a JVM".
    """
    proc = Path(f"/proc/{pid}")
    for _ in range(40):
        try:
            stat = (proc / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":
                return None
            raw = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        if raw:
            return raw.split(b"\0")
        time.sleep(0.025)
    return []


def _is_our_broker(pid: int | None, layout: _Layout) -> bool:
    """True if ``pid`` is alive and is the ``kafka.Kafka`` JVM for this data dir.

    Checks the command line (Linux) so a recycled pid never gets signalled by ``down``.
    """
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not Path("/proc/self").exists():  # no procfs (macOS): trust the pid file
        return True
    args = _cmdline(pid)
    return args is not None and b"kafka.Kafka" in args and str(layout.server_properties).encode() in args


def _wait_exit(pid: int, timeout_s: float) -> None:
    """Wait until ``pid`` is fully gone: an exiting JVM drops its cmdline before its last
    stderr write lands and before its sockets are closed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _failure(layout: _Layout, message: str) -> RuntimeError:
    """Error carrying the broker log tail: the only useful clue when a JVM dies at startup."""
    parts = [message, f"--- last {LOG_TAIL_LINES} lines of {layout.server_log} ---"]
    parts.append(_tail(layout.server_log))
    stdout = _tail(layout.stdout_log, 15)
    if stdout.strip() and stdout != "(no log)":
        parts += [f"--- {layout.stdout_log} ---", stdout]
    return RuntimeError("\n".join(parts))


# --------------------------------------------------------------------------- Kafka protocol


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    """Send one request with a v1 (non-flexible) header; return the response body."""
    client_id = b"agentstream-launcher"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got,) = struct.unpack(">i", response[:4])
    if got != corr:
        raise ConnectionError(f"correlation id mismatch ({got} != {corr})")
    return response[4:]


def probe(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True if a Kafka broker at host:port serves requests and lists at least one live broker.

    ApiVersions (v0, supported by every broker) proves the request path is up; a Metadata
    request then proves the broker is registered and unfenced, i.e. clients will work.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            body = _request(sock, api_key=18, version=0, corr=1, body=b"")
            error_code, count = struct.unpack(">hi", body[:6])
            if error_code != 0:
                return False
            versions = {
                key: (lo, hi) for key, lo, hi in struct.iter_unpack(">hhh", body[6 : 6 + 6 * count])
            }
            lo, hi = versions.get(3, (0, -1))  # Metadata
            if not lo <= 7 <= hi:
                return True  # unknown broker generation; ApiVersions is enough
            # Metadata v7: empty topic list (brokers only), allow_auto_topic_creation=false.
            body = _request(sock, api_key=3, version=7, corr=2, body=struct.pack(">ib", 0, 0))
            _throttle, brokers = struct.unpack(">ii", body[:8])
            return bool(brokers > 0)
    except (OSError, ConnectionError, struct.error):
        return False


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    hosts = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host.strip("[]") or HOST, int(port)))
    return hosts


# --------------------------------------------------------------------------- broker setup


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise RuntimeError("java not found: install a JDK >= 17 (e.g. openjdk-17-jre-headless)")
    return found


def _classpath(layout: _Layout, log: Log) -> str:
    """Broker classpath from Maven, cached per pom hash (the jars themselves live in ~/.m2)."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    cache = layout.root / f"classpath-{digest}.txt"
    if cache.exists():
        cp = cache.read_text().strip()
        if cp and all(Path(p).exists() for p in cp.split(os.pathsep)):
            return cp
    mvn = shutil.which("mvn")
    if not mvn:
        raise RuntimeError("mvn not found: install Maven >= 3.6 to fetch the Kafka jars")
    log("kafka: resolving broker jars with Maven (first run downloads ~100 MB into ~/.m2)...")
    started = time.monotonic()
    tmp = cache.with_suffix(".tmp")
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:build-classpath",
        f"-Dmdep.outputFile={tmp}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"mvn timed out after {MAVEN_TIMEOUT_S:.0f}s") from exc
    if proc.returncode != 0 or not tmp.exists():
        output = "\n".join((proc.stdout + proc.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise RuntimeError(f"mvn dependency:build-classpath failed ({proc.returncode}):\n{output}")
    tmp.replace(cache)
    for stale in layout.root.glob("classpath-*.txt"):
        if stale != cache:
            stale.unlink(missing_ok=True)
    log(f"kafka: jars ready in {time.monotonic() - started:.1f}s")
    return cache.read_text().strip()


def _cluster_id() -> str:
    """A Kafka Uuid: 16 random bytes, URL-safe base64 without padding.

    Like Kafka's own ``Uuid.randomUuid``, an id starting with ``-`` is drawn again: the storage
    tool's argument parser would read it as an option (1 start in 64 failed that way).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _controller_port(port: int, state: dict[str, Any]) -> int:
    """Keep the previous controller port if still usable, else port+1, else any free port."""
    previous = state.get("controller_port")
    if state.get("port") == port and isinstance(previous, int) and _port_free(previous):
        return previous
    if port + 1 <= 65535 and _port_free(port + 1):
        return port + 1
    return free_port()


def _write_server_properties(layout: _Layout, port: int, controller_port: int) -> None:
    template = string.Template(SERVER_TEMPLATE.read_text())
    layout.server_properties.write_text(
        template.substitute(port=port, controller_port=controller_port, log_dirs=layout.kraft)
    )


def _jvm_base(cp: str, layout: _Layout) -> list[str]:
    return [
        _java(),
        "-cp",
        cp,
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={layout.root}",
        "-Djava.awt.headless=true",
    ]


def _format_storage(layout: _Layout, cp: str, log: Log) -> None:
    """Format KRaft storage once; later starts reuse it so topics and offsets survive."""
    if (layout.kraft / "meta.properties").exists():
        return
    log("kafka: formatting KRaft storage...")
    layout.kraft.mkdir(parents=True, exist_ok=True)
    cmd = [
        *_jvm_base(cp, layout),
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={_cluster_id()}",
        f"--config={layout.server_properties}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        output = "\n".join((proc.stdout + proc.stderr).splitlines()[-LOG_TAIL_LINES:])
        raise RuntimeError(f"kafka StorageTool format failed ({proc.returncode}):\n{output}")


def _wait_reachable(bootstrap: str, timeout_s: float, log: Log) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if any(probe(h, p) for h, p in parse_bootstrap(bootstrap)):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} is not reachable")
        log(f"kafka: waiting for external broker {bootstrap}...")
        time.sleep(1.0)


# --------------------------------------------------------------------------- public API


def up(
    port: int | None = None,
    data_dir: Path | None = None,
    timeout_s: float = 120,
    log: Log = print,
) -> str:
    """Start the local broker (or reuse a running one) and return its bootstrap address.

    With ``$KAFKA_BOOTSTRAP_SERVERS`` set nothing is started: that address is returned once a
    broker there answers. ``timeout_s`` bounds the broker startup, not the one-off jar download.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        _wait_reachable(external, timeout_s, log)
        return external

    port = default_port() if port is None else port
    bootstrap = f"{HOST}:{port}"
    layout = _Layout(data_dir)
    with _locked(layout):
        state = layout.read_state()
        pid = layout.read_pid()
        if _is_our_broker(pid, layout):
            if state.get("port") != port:
                raise RuntimeError(
                    f"a broker from {layout.root} already runs on port {state.get('port')}; "
                    "run `down` first to move it"
                )
            if probe(HOST, port):
                return bootstrap
            log(f"kafka: broker pid {pid} is running but not ready yet, waiting...")
        else:
            layout.pid.unlink(missing_ok=True)
            if not _port_free(port):
                raise RuntimeError(
                    f"port {port} is already in use by another process; set "
                    "AGENTSTREAM_KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS"
                )
            pid = _start(layout, port, state, log)

        return _wait_ready(layout, pid, port, timeout_s, log)


def _start(layout: _Layout, port: int, state: dict[str, Any], log: Log) -> int:
    cp = _classpath(layout, log)
    controller_port = _controller_port(port, state)
    _write_server_properties(layout, port, controller_port)
    _format_storage(layout, cp, log)
    log(f"kafka: starting broker on {HOST}:{port} (logs: {layout.server_log})...")
    cmd = [
        *_jvm_base(cp, layout),
        JVM_HEAP,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "kafka.Kafka",
        str(layout.server_properties),
    ]
    with open(layout.stdout_log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=layout.root,
            start_new_session=True,  # survive our exit and terminal Ctrl-C
            close_fds=True,
        )
    layout.pid.write_text(f"{proc.pid}\n")
    layout.write_state({"port": port, "controller_port": controller_port, "pid": proc.pid})
    return proc.pid


def _wait_ready(layout: _Layout, pid: int | None, port: int, timeout_s: float, log: Log) -> str:
    started = time.monotonic()
    next_note = started + 10
    while not probe(HOST, port):
        if not _is_our_broker(pid, layout):
            if pid:
                _wait_exit(pid, 3.0)
            layout.pid.unlink(missing_ok=True)
            raise _failure(layout, f"Kafka broker exited during startup (pid {pid})")
        now = time.monotonic()
        if now - started > timeout_s:
            raise _failure(
                layout,
                f"Kafka broker not ready after {timeout_s:.0f}s "
                f"(pid {pid} left running: `up` again to keep waiting, `down` to stop it)",
            )
        if now >= next_note:
            log(f"kafka: still starting ({now - started:.0f}s)...")
            next_note = now + 10
        time.sleep(0.25)
    log(f"kafka: broker ready on {HOST}:{port} in {time.monotonic() - started:.1f}s (pid {pid})")
    return f"{HOST}:{port}"


def down(data_dir: Path | None = None, timeout_s: float = 30, log: Log = print) -> bool:
    """Stop the broker: SIGTERM (clean shutdown keeps data), SIGKILL after ``timeout_s``.

    Idempotent; returns True if a running broker was stopped.
    """
    layout = _Layout(data_dir)
    with _locked(layout):
        pid = layout.read_pid()
        if not pid or not _is_our_broker(pid, layout):
            layout.pid.unlink(missing_ok=True)
            return False
        log(f"kafka: stopping broker (pid {pid})...")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _is_our_broker(pid, layout):
            if time.monotonic() >= deadline:
                log(f"kafka: broker did not stop in {timeout_s:.0f}s, sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                kill_deadline = time.monotonic() + 10
                while _is_our_broker(pid, layout) and time.monotonic() < kill_deadline:
                    time.sleep(0.1)
                break
            time.sleep(0.2)
        _wait_exit(pid, 5.0)
        layout.pid.unlink(missing_ok=True)
        log("kafka: broker stopped")
        return True


def status(data_dir: Path | None = None) -> dict[str, Any]:
    """Broker state for this data dir: running, ready, pid, bootstrap, data_dir, log."""
    layout = _Layout(data_dir)
    pid = layout.read_pid()
    state = layout.read_state()
    running = _is_our_broker(pid, layout)
    port = state.get("port")
    bootstrap = f"{HOST}:{port}" if port else None
    return {
        "running": running,
        "ready": bool(running and port and probe(HOST, int(port))),
        "pid": pid if running else None,
        "bootstrap": bootstrap,
        "data_dir": str(layout.root),
        "log": str(layout.server_log),
    }


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """CLI: progress goes to stderr, the bootstrap address (``up``) to stdout."""
    parser = argparse.ArgumentParser(prog="launcher.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--port", type=int, default=None, help="default $AGENTSTREAM_KAFKA_PORT or 9092"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="default $AGENTSTREAM_KAFKA_DIR or <repo>/.data/kafka",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds (up: 120, down: 30)")
    args = parser.parse_args(argv)

    def err(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        if args.command == "up":
            print(up(args.port, args.data_dir, args.timeout or 120, log=err), flush=True)
        elif args.command == "down":
            down(args.data_dir, args.timeout or 30, log=err)
        else:
            info = status(args.data_dir)
            print(json.dumps(info, indent=2))
            return 0 if info["running"] else 1
    except RuntimeError as exc:
        err(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
