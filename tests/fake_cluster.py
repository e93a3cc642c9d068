"""A real Ray autoscaler on this machine, for integration tests: Ray's fake multi-node provider.

`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=cluster/local.yaml` runs Ray's own
autoscaler (the head's monitor process) with the `fake_multinode` provider, which "launches" a
node by starting another raylet on this host and "terminates" it by killing that raylet. So
scale-up for pending placement groups, idle removal and node loss behave as on a cloud cluster.

Several Ray instances may share this machine (other tests, other users), and `ray stop` would
kill all of them. This module therefore starts the cluster in a session of its own, on free
ports and under its own temporary directory, and stops it by killing exactly that session's
processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_CLUSTER_CONFIG = REPO_ROOT / "cluster" / "local.yaml"
RAY_EXECUTABLE = Path(sys.executable).with_name("ray")
HEAD_NODE_TYPE = "ray.head.default"

# The autoscaler's default update period is 5 s; 1 s makes scale-up and idle removal show in
# seconds rather than tens of seconds.
AUTOSCALER_UPDATE_INTERVAL_S = 1
# A killed raylet is declared dead after about period x threshold (defaults: 3 s x 5); a shorter
# period makes node-loss tests wait less while staying far above a loaded machine's hiccups.
FAST_NODE_DEATH_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 4,
}


# The autoscaler writes a status report to monitor.log every update; the report's lines carry no
# timestamp, the log line after it does.
AUTOSCALER_STATUS_BANNER = "======== Autoscaler status"
LOG_LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


class FakeClusterError(RuntimeError):
    """The fake cluster did not start, or did not reach the state a test waited for."""


@dataclass(frozen=True)
class NodeInfo:
    """One node as the GCS records it (dead nodes stay listed)."""

    node_id: str
    alive: bool
    is_head: bool
    cpus: float


@dataclass
class FakeCluster:
    """Handle on a running fake autoscaling cluster; see `fake_cluster()`."""

    gcs_address: str
    dashboard_url: str
    temp_dir: Path
    config: dict[str, Any]
    session_id: int
    launched_at_s: float

    def driver_env(self) -> dict[str, str]:
        """Environment for a driver of this cluster (`python script.py`, `ray job submit`)."""
        env = _environment_without_ray()
        env.update(
            RAY_ADDRESS=self.gcs_address,
            RAY_API_SERVER_ADDRESS=self.dashboard_url,
            RAY_AUTH_MODE="disabled",
        )
        return env

    @property
    def state_api(self) -> str:
        """The address to give Ray's state API (`ray.util.state.list_*`): the dashboard's URL.

        Given a GCS address instead, the state API points this process's global internal-KV
        client at that GCS to look the dashboard up, and leaves it there. After the cluster stops,
        the next KV call of this process's own Ray (Tune and Train make them) waits 60 s for the
        dead GCS and then ends the whole process with exit code 1."""
        return self.dashboard_url

    def nodes(self) -> list[NodeInfo]:
        """Every node the cluster has had, head included, alive or dead."""
        from ray.util.state import list_nodes

        states = list_nodes(address=self.state_api, limit=1000, raise_on_missing_output=False)
        return [
            NodeInfo(
                node_id=state.node_id,
                alive=state.state == "ALIVE",
                is_head=state.is_head_node,
                cpus=float(state.resources_total.get("CPU", 0.0)),
            )
            for state in states
        ]

    def alive_workers(self) -> list[NodeInfo]:
        return [node for node in self.nodes() if node.alive and not node.is_head]

    def wait_for_alive_workers(self, count: int, timeout_s: float, poll_s: float = 0.5) -> float:
        """Wait until exactly `count` worker nodes are alive; return the seconds it took."""
        started = time.monotonic()
        while True:
            alive = len(self.alive_workers())
            if alive == count:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise FakeClusterError(
                    f"{alive} alive worker nodes after {timeout_s:.0f} s, expected {count}; "
                    f"the autoscaler's last report ({self.monitor_log()}):\n"
                    f"{self.autoscaler_status()}"
                )
            time.sleep(poll_s)

    def wait_until_dead(self, node_id: str, timeout_s: float, poll_s: float = 0.5) -> float:
        """Wait until the GCS has declared `node_id` dead; return the seconds it took."""
        started = time.monotonic()
        while any(node.node_id == node_id and node.alive for node in self.nodes()):
            if time.monotonic() - started > timeout_s:
                raise FakeClusterError(f"node {node_id} still alive after {timeout_s:.0f} s")
            time.sleep(poll_s)
        return time.monotonic() - started

    def kill_worker_node(self, node_id: str) -> None:
        """Simulate losing a node (spot preemption, crash): SIGKILL its raylet.

        The GCS then declares the node dead and its tasks and actors fail over. Unlike a cloud
        provider, whose reclaimed instance disappears, the fake provider keeps listing the node,
        and the autoscaler, whose node updaters are disabled, sees it as a node still being set
        up: it never removes it, counts it towards `max_workers`, and launches a replacement only
        for work that does not fit what the node last had free (within the 30 s before its
        missing heartbeats turn it into a pending node with all its resources). Kill a node that
        the lost work filled, and do it last on a shared cluster.
        """
        raylets = [
            pid
            for pid in _session_processes(self.session_id, self.launched_at_s)
            if _is_raylet_of(pid, node_id)
        ]
        if not raylets:
            raise FakeClusterError(f"no raylet for worker node {node_id} in this cluster")
        for pid in raylets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def monitor_log(self) -> Path:
        return self.temp_dir / "session_latest" / "logs" / "monitor.log"

    def autoscaler_status(self) -> str:
        """The autoscaler's latest status report (nodes, pending nodes, resource usage and
        demands): what a failed wait needs to explain itself, as the log goes with the cluster."""
        try:
            text = self.monitor_log().read_text(errors="replace")
        except OSError as error:
            return f"(no autoscaler log: {error.strerror})"
        start = text.rfind(AUTOSCALER_STATUS_BANNER)
        if start < 0:
            return "(no status report yet)"
        first, *rest = text[start:].splitlines()
        report = [first]
        for line in rest:
            if LOG_LINE_START.match(line):
                break
            report.append(line)
        return "\n".join(report)

    def stop(self, grace_s: float = 2.0) -> None:
        """Kill every process of this cluster and nothing else: SIGTERM, then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _session_processes(self.session_id, self.launched_at_s):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace_s
            while _session_processes(self.session_id, self.launched_at_s):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            else:
                return
        survivors = _session_processes(self.session_id, self.launched_at_s)
        if survivors:
            raise FakeClusterError(f"fake cluster processes survived SIGKILL: {survivors}")


def fake_cluster_config(
    gcs_address: str, config_path: Path = LOCAL_CLUSTER_CONFIG, **overrides: Any
) -> dict[str, Any]:
    """The launcher YAML with the provider pointed at this head's GCS (it assumes port 6379)."""
    config = yaml.safe_load(config_path.read_text())
    config["provider"]["gcs_address"] = gcs_address
    config.update(overrides)
    return config


@contextlib.contextmanager
def fake_cluster(
    config_path: Path = LOCAL_CLUSTER_CONFIG,
    system_config: dict[str, Any] | None = None,
    start_timeout_s: float = 240.0,
    **config_overrides: Any,
) -> Iterator[FakeCluster]:
    """Start a fake autoscaling cluster from `config_path`, yield it, and always stop it.

    The head gets exactly the resources its node type declares (cluster/local.yaml: no CPUs,
    so every task or placement group that needs CPUs makes the autoscaler add worker nodes).
    `config_overrides` replace top-level keys of the YAML (e.g. `idle_timeout_minutes`).
    """
    if not sys.platform.startswith("linux"):
        raise FakeClusterError("the fake cluster helpers read /proc and run on Linux only")
    # Short path: Ray's unix sockets live below it and socket paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="tcwae-fake-", dir="/tmp"))
    node_ip = _node_ip_address()
    gcs_port, dashboard_port, agent_port, client_port = _free_ports(node_ip, 4)
    gcs_address = f"{node_ip}:{gcs_port}"
    config = fake_cluster_config(gcs_address, config_path, **config_overrides)
    config_file = temp_dir / "autoscaling.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    head_resources = dict(config["available_node_types"][HEAD_NODE_TYPE]["resources"])

    command = [
        str(RAY_EXECUTABLE),
        "start",
        "--head",
        f"--node-ip-address={node_ip}",
        f"--port={gcs_port}",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--ray-client-server-port={client_port}",
        f"--temp-dir={temp_dir}",
        f"--autoscaling-config={config_file}",
        f"--num-cpus={head_resources.pop('CPU', 0)}",
        f"--num-gpus={head_resources.pop('GPU', 0)}",
        "--disable-usage-stats",
    ]
    if head_resources:
        command.append(f"--resources={json.dumps(head_resources)}")
    if system_config:
        command.append(f"--system-config={json.dumps(system_config)}")
    env = _environment_without_ray()
    env.update(
        RAY_FAKE_CLUSTER="1",
        AUTOSCALER_UPDATE_INTERVAL_S=str(AUTOSCALER_UPDATE_INTERVAL_S),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
    )

    launched_at_s = _seconds_since_boot()
    # A new session: every daemon `ray start` leaves behind, every fake node the autoscaler
    # starts and every worker process of those nodes inherits this session id.
    starter = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    cluster = FakeCluster(
        gcs_address=gcs_address,
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        temp_dir=temp_dir,
        config=config,
        session_id=starter.pid,
        launched_at_s=launched_at_s,
    )
    from ray.experimental import internal_kv

    own_kv_client = internal_kv.internal_kv_get_gcs_client()
    succeeded = False
    try:
        try:
            output, _ = starter.communicate(timeout=start_timeout_s)
        except subprocess.TimeoutExpired as error:
            raise FakeClusterError(f"`ray start` took over {start_timeout_s:.0f} s") from error
        if starter.returncode != 0:
            raise FakeClusterError(f"`ray start` failed ({starter.returncode}):\n{output}")
        yield cluster
        if internal_kv.internal_kv_get_gcs_client() is not own_kv_client:
            internal_kv._internal_kv_reset()
            if own_kv_client is not None:
                internal_kv._initialize_internal_kv(own_kv_client)
            raise FakeClusterError(
                "this process's Ray internal-KV client was pointed at the fake cluster's GCS "
                "(Ray's state API given a GCS address does that); it would outlive the cluster "
                "and end this process. Give the state API `FakeCluster.state_api`"
            )
        succeeded = True
    finally:
        cluster.stop()
        if succeeded:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _environment_without_ray() -> dict[str, str]:
    """This process's environment minus Ray settings, with this interpreter first on PATH.

    Ray settings of whoever runs the tests must not leak into the cluster. The PATH matters
    because a job's entrypoint (`python pipeline/sweep.py ...`) is a shell command run with the
    environment the cluster was started with: without it, `python` is whatever the system has.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _node_ip_address() -> str:
    """The IP Ray would pick for this host; the fake nodes register under it."""
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def _free_ports(host: str, count: int) -> list[int]:
    """Ports the kernel reports free right now, all distinct (bound together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


def _seconds_since_boot() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _process_state_and_start_s(pid: int) -> tuple[str, float]:
    """State letter and start time in seconds since boot (fields 3 and 22 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields_after_name = stat.rsplit(")", 1)[1].split()
    return fields_after_name[0], int(fields_after_name[19]) / _clock_ticks_per_second()


def _session_processes(session_id: int, launched_at_s: float) -> list[int]:
    """Live PIDs in the cluster's session, started no earlier than the cluster.

    The start-time check guards against a recycled session id; zombies are skipped because
    they are already dead and only wait for their parent to reap them.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getsid(pid) != session_id:
                continue
            state, started_s = _process_state_and_start_s(pid)
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        if state != "Z" and started_s >= launched_at_s - 1.0:
            pids.append(pid)
    return pids


def _is_raylet_of(pid: int, node_id: str) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return (
        bool(arguments)
        and arguments[0].endswith(b"/raylet")
        and (f"--node_id={node_id}".encode() in arguments)
    )
