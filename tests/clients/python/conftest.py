"""Session fixtures for the Python SDK client tests.

One conformance fixture (Streamable HTTP) and one Gatehouse gateway are started
per test session. The gateway fronts three members on the virtual server at
/mcp:

* ``everything`` — @modelcontextprotocol/server-everything over stdio, prefix ``ev_``;
* ``fixture``    — the Rust conformance fixture over Streamable HTTP, no prefix;
* ``probe``      — tests/clients/python/cancel_probe_server.py over stdio, prefix
  ``py_``; it makes a cancellation observable at the member.

Paths can be overridden with GATEHOUSE_BIN, CONFORMANCE_FIXTURE_BIN, NODE_BIN and
SERVER_EVERYTHING_JS; by default they come from CARGO_TARGET_DIR (or
~/.cache/gatehouse-target) and the repository's .tools/npm.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "gatehouse-target")
GATEHOUSE_BIN = Path(os.environ.get("GATEHOUSE_BIN") or TARGET_DIR / "debug" / "gatehouse")
FIXTURE_BIN = Path(os.environ.get("CONFORMANCE_FIXTURE_BIN") or TARGET_DIR / "debug" / "conformance-fixture")
NODE_BIN = os.environ.get("NODE_BIN") or shutil.which("node") or "node"
SERVER_EVERYTHING_JS = Path(
    os.environ.get("SERVER_EVERYTHING_JS")
    or ROOT / ".tools/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
)
PROBE_SERVER = HERE / "cancel_probe_server.py"

STARTUP_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Spawned:
    """A subprocess started in its own process group, with its output captured."""

    name: str
    proc: subprocess.Popen[str]
    stderr_path: Path
    first_line: str
    stdout_lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, n: int = 40) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process, then SIGKILL its process group (ours) and any of its
        descendants (e.g. stdio members in their own groups) that outlived it."""
        descendants = descendants_of(self.proc.pid) if self.proc.poll() is None else set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        # The group id is the child's pid (start_new_session); it only holds processes we spawned.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in descendants):
            time.sleep(0.1)
        for pid in descendants:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def children_of(pid: int) -> set[int]:
    """Direct children of `pid`, read from /proc."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def descendants_of(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies (Linux), so a
    killed pytest leaves no gateway behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(name: str, argv: list[str], log_dir: Path, prefix: str) -> Spawned:
    """Starts `argv`, waits for a first stdout line starting with `prefix`."""
    stderr_path = log_dir / f"{name}.stderr.log"
    stderr_file = open(stderr_path, "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        cwd=log_dir,
    )
    stderr_file.close()
    lines: queue.Queue[str | None] = queue.Queue()
    collected: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            collected.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    first: str | None = None
    try:
        first = lines.get(timeout=max(0.1, deadline - time.monotonic()))
    except queue.Empty:
        pass
    spawned = Spawned(name, proc, stderr_path, (first or "").strip(), collected)
    if first is None or not first.startswith(prefix):
        spawned.stop()
        raise RuntimeError(
            f"{name} did not print {prefix!r} within {STARTUP_TIMEOUT}s "
            f"(first line {first!r}, exit {proc.poll()}):\n{spawned.stderr_tail()}"
        )
    return spawned


def wait_for_port(port: int, what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    """Waits until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on port {port}")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require(path: Path, hint: str) -> None:
    if not path.exists():
        pytest.exit(f"missing {path} ({hint})", returncode=2)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gatehouse-clients")


@pytest.fixture(scope="session")
def conformance_fixture(log_dir: Path) -> Iterator[Spawned]:
    _require(FIXTURE_BIN, "cargo build -p gatehouse-testkit")
    proc = spawn("conformance-fixture", [str(FIXTURE_BIN), "--listen", "127.0.0.1:0", "--era", "modern"], log_dir, "listening on ")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def fixture_url(conformance_fixture: Spawned) -> str:
    return conformance_fixture.first_line.removeprefix("listening on ").strip()


def gateway_config(fixture_url: str, *, probe: bool = True) -> dict:
    servers: list[dict] = [
        {"name": "everything", "command": NODE_BIN, "args": [str(SERVER_EVERYTHING_JS), "stdio"]},
        {"name": "fixture", "url": fixture_url},
    ]
    include: list[dict] = [{"server": "everything", "prefix": "ev_"}, {"server": "fixture"}]
    if probe:
        servers.append({"name": "probe", "command": sys.executable, "args": [str(PROBE_SERVER)]})
        include.append({"server": "probe", "prefix": "py_"})
    return {
        "servers": servers,
        "virtual_servers": [{"name": "default", "path": "/mcp", "include": include}],
    }


def start_gateway(config: dict, work_dir: Path, name: str = "gatehouse") -> tuple[Spawned, str]:
    """Starts `gatehouse up` for `config` (JSON is valid YAML); returns it and its /mcp URL."""
    _require(GATEHOUSE_BIN, "cargo build -p gatehouse")
    _require(SERVER_EVERYTHING_JS, "scripts/client-tests installs it into .tools/npm")
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "gatehouse.yaml"
    config_path.write_text(json.dumps(config, indent=2))
    data_dir = work_dir / "data"
    data_dir.mkdir(exist_ok=True)
    argv = [
        str(GATEHOUSE_BIN),
        "up",
        "--config",
        str(config_path),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
    ]
    gw = spawn(name, argv, work_dir, "Gatehouse ")
    marker = " listening on "
    if marker not in gw.first_line:
        gw.stop()
        raise RuntimeError(f"unexpected first line from gatehouse: {gw.first_line!r}")
    base = gw.first_line.split(marker, 1)[1].strip().rstrip("/")
    return gw, f"{base}/mcp"


@pytest.fixture(scope="session")
def gateway(fixture_url: str, log_dir: Path) -> Iterator[Spawned]:
    gw, url = start_gateway(gateway_config(fixture_url), log_dir / "gateway")
    gw.url = url  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway: Spawned) -> str:
    return gateway.url  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On failure, attach the tail of the gateway's stderr to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        gw = item.funcargs.get("gateway") if hasattr(item, "funcargs") else None
        if gw is None:
            try:
                gw = item._request.getfixturevalue("gateway")  # type: ignore[attr-defined]
            except Exception:
                gw = None
        if isinstance(gw, Spawned):
            report.sections.append(("gateway stderr (tail)", gw.stderr_tail(30)))
