"""The Ray cluster a command runs on: join or start one, what it offers, and the queue that
carries rank 0's progress lines to the console."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tcwae.errors import UserError

CONNECT_TIMEOUT_S = 2.0
ADDRESS_VARIABLE = "RAY_ADDRESS"
API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"
LOCAL_HOST = "127.0.0.1"


def connect(verbose: bool = False) -> None:
    """Join $RAY_ADDRESS, else the answering local cluster Ray recorded, else start a local one;
    Ray's own log lines reach this console only when `verbose`. Plain `ray.init()` would retry a
    recorded cluster whose head died for 14 minutes: a record that does not answer is removed (as
    `ray stop` would); an explicit $RAY_ADDRESS that does not answer is a UserError."""
    import ray

    if ray.is_initialized():
        return
    options = {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    asked, recorded = os.environ.get(ADDRESS_VARIABLE, ""), recorded_address()
    if asked:
        address = recorded if asked == "auto" else asked
        if address is None or not answers(address):
            raise UserError(
                f"{ADDRESS_VARIABLE}={asked} names a Ray cluster that does not answer within "
                f"{CONNECT_TIMEOUT_S:g} s (address {address or 'none recorded'}); start that "
                f"cluster, or run `ray stop` and unset {ADDRESS_VARIABLE} to train on a local "
                "Ray instance"
            )
    elif recorded is not None and not answers(recorded):
        from ray._common.utils import get_ray_address_file

        record = get_ray_address_file(None)
        print(
            f"ray: the local Ray cluster recorded at {recorded} ({record}) does not answer; "
            "removed that record and starting a fresh local instance",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(FileNotFoundError):
            os.remove(record)
        recorded = None
    if asked or recorded is not None:
        ray.init(**options)
    else:
        start_local(**options)


def start_local(**options: Any) -> None:
    """Start a local Ray instance whose processes all know its dashboard's address (in their
    runtime environment): Ray Train's placement-group cleaner asks the state API, which otherwise
    fails beside a second Ray instance, and a stopped trial never releases its CPUs."""
    import ray

    port = free_port(LOCAL_HOST)
    runtime_env = dict(options.pop("runtime_env", None) or {})
    env_vars = runtime_env.get("env_vars", {})
    runtime_env["env_vars"] = {**env_vars, API_SERVER_VARIABLE: f"http://{LOCAL_HOST}:{port}"}
    ray.init(
        address="local",
        include_dashboard=True,
        dashboard_host=LOCAL_HOST,
        dashboard_port=port,
        runtime_env=runtime_env,
        **options,
    )


def free_port(host: str) -> int:
    """A TCP port on `host` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def recorded_address() -> str | None:
    """The last local cluster started here, as Ray records it ($RAY_TMPDIR/ray/...)."""
    from ray._common.utils import get_ray_address_file

    try:
        return Path(get_ray_address_file(None)).read_text().strip() or None
    except OSError:
        return None


def answers(address: str) -> bool:
    """Whether something accepts a connection at `address` ('host:port', optionally with a
    scheme such as ray://) within CONNECT_TIMEOUT_S. Anything unparsable is left to Ray."""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return True
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def available_resources() -> tuple[float, float, str]:
    """(CPUs, GPUs, where): the connected Ray cluster's, else this machine's."""
    import ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
        return resources.get("CPU", 0.0), resources.get("GPU", 0.0), "the Ray cluster"
    import torch

    return float(os.cpu_count() or 1), float(torch.cuda.device_count()), "this machine"


def cluster_capacity() -> tuple[dict[str, float], bool]:
    """The most CPUs and GPUs the cluster can offer (now, or its autoscaler's node types) and
    whether it may grow unannounced (a joined cluster whose autoscaler publishes no limits)."""
    import ray
    from ray._private.state import state

    now = ray.cluster_resources()
    ceiling = state.get_max_resources_from_cluster_config()
    may_grow = ceiling is None and not ray._private.worker.global_worker.node.head
    ceiling = ceiling or {}
    most = {key: max(float(now.get(key, 0)), float(ceiling.get(key, 0))) for key in ("CPU", "GPU")}
    return most, may_grow


def resources_in_use() -> str:
    """'Resources in use: 2/2 CPUs, 0/0 GPUs', Ray Train's workers included (unlike Tune's)."""
    import ray

    total, free = ray.cluster_resources(), ray.available_resources()
    used = {key: total.get(key, 0.0) - free.get(key, 0.0) for key in ("CPU", "GPU")}
    return (
        f"Resources in use: {used['CPU']:g}/{total.get('CPU', 0.0):g} CPUs, "
        f"{used['GPU']:g}/{total.get('GPU', 0.0):g} GPUs"
    )


@contextlib.contextmanager
def printed_lines(prefix: str) -> Iterator[Any]:
    """A Ray queue whose lines a thread here prints: rank 0's progress while workers' output is
    hidden (see `connect`)."""
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})
    done = threading.Event()

    def pump() -> None:
        while True:
            try:
                print(f"{prefix}{queue.get(timeout=0.5)}", flush=True)
            except Empty:
                if done.is_set():
                    return

    thread = threading.Thread(target=pump, name="progress", daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        done.set()
        thread.join(timeout=5)
        queue.shutdown()
