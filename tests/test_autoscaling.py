"""The autoscaler of cluster/local.yaml adds nodes for work that does not fit and removes them.

A real Ray autoscaler runs with the fake multi-node provider (see tests/fake_cluster.py). The
head has no CPUs, so a placement group of two 2-CPU bundles that must land on different nodes
needs two new worker nodes; once the driver that holds it exits, those nodes go idle and the
autoscaler removes them. A second test kills a node under a placement group and checks that the
autoscaler replaces it and the bundle that lived there runs again on the new node.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from fake_cluster import FAST_NODE_DEATH_SYSTEM_CONFIG, FakeCluster, fake_cluster

pytestmark = pytest.mark.ray

WORKER_CPUS = 2
BUNDLES = 2
SCALE_UP_TIMEOUT_S = 90.0
# idle_timeout_minutes is 0.1 (6 s) in cluster/local.yaml; allow for a loaded machine.
IDLE_REMOVAL_TIMEOUT_S = 60.0
# FAST_NODE_DEATH_SYSTEM_CONFIG declares a killed raylet dead after about 4 s.
NODE_DEATH_TIMEOUT_S = 30.0
RESULT_PREFIX = "RESULT "

# Holds a STRICT_SPREAD placement group; for every line on stdin runs one task in each bundle
# and reports the nodes they ran on; exits (releasing the group) when stdin closes.
DRIVER_SCRIPT = f"""
import json, sys, ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

ray.init(logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=1)
def node_of_task():
    return ray.get_runtime_context().get_node_id()

group = placement_group([{{"CPU": {WORKER_CPUS}}}] * {BUNDLES}, strategy="STRICT_SPREAD")

def report_bundle_nodes():
    tasks = [
        node_of_task.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, bundle)
        ).remote()
        for bundle in range({BUNDLES})
    ]
    print({RESULT_PREFIX!r} + json.dumps(ray.get(tasks)), flush=True)

report_bundle_nodes()
for _ in sys.stdin:
    report_bundle_nodes()
"""


class Driver:
    """A Ray driver subprocess attached to the fake cluster, spoken to line by line."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER_SCRIPT],
            env=cluster.driver_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.results: queue.Queue[list[str]] = queue.Queue()
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_output(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith(RESULT_PREFIX):
                self.results.put(json.loads(line.removeprefix(RESULT_PREFIX)))

    def bundle_nodes(self, timeout_s: float) -> list[str]:
        """Node ids of the next report: where one task in each bundle ran."""
        try:
            return self.results.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(
                f"no bundle report within {timeout_s:.0f} s; driver output:\n"
                + "".join(self.output[-40:])
            ) from None

    def request_report(self) -> None:
        self.process.stdin.write("report\n")
        self.process.stdin.flush()

    def release(self, timeout_s: float = 30.0) -> None:
        """Close stdin so the driver exits and its placement group is removed."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    with fake_cluster(system_config=FAST_NODE_DEATH_SYSTEM_CONFIG) as running:
        yield running


@pytest.fixture
def driver(cluster: FakeCluster) -> Iterator[Driver]:
    """A driver holding the placement group; each test starts with no worker nodes."""
    cluster.wait_for_alive_workers(0, IDLE_REMOVAL_TIMEOUT_S)
    held = Driver(cluster)
    yield held
    held.release()
    cluster.wait_for_alive_workers(0, IDLE_REMOVAL_TIMEOUT_S)


def test_nodes_added_for_placement_group_then_removed_when_idle(
    cluster: FakeCluster, driver: Driver
) -> None:
    bundle_nodes = driver.bundle_nodes(SCALE_UP_TIMEOUT_S)
    workers = {node.node_id: node for node in cluster.alive_workers()}
    assert len(set(bundle_nodes)) == BUNDLES
    assert set(bundle_nodes) <= set(workers)
    assert all(workers[node_id].cpus == WORKER_CPUS for node_id in bundle_nodes)

    driver.release()
    cluster.wait_for_alive_workers(0, IDLE_REMOVAL_TIMEOUT_S)
    dead = {node.node_id for node in cluster.nodes() if not node.alive}
    assert set(bundle_nodes) <= dead


def test_lost_node_is_replaced_and_its_bundle_runs_again(
    cluster: FakeCluster, driver: Driver
) -> None:
    lost, kept = driver.bundle_nodes(SCALE_UP_TIMEOUT_S)
    cluster.kill_worker_node(lost)
    cluster.wait_until_dead(lost, NODE_DEATH_TIMEOUT_S)

    driver.request_report()
    replaced, still_kept = driver.bundle_nodes(SCALE_UP_TIMEOUT_S)

    assert still_kept == kept
    assert replaced not in (lost, kept)
    assert replaced in {node.node_id for node in cluster.alive_workers()}
