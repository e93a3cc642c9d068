"""A finished smoke sweep as a canonical, JSON-able record, and a readable diff of two records.

Issue 31 (one typed configuration, one run spec, `pipeline/search/`) must not change behaviour:
tests/pipeline/test_golden_sweep.py runs the shipped `smoke` profile of
search_spaces/dsprites.yaml and compares its record with tests/golden/smoke_sweep.json, captured
from commit 58a5c49 (before the refactor). This module reads only what the sweep printed and the
MLflow store (through the `mlflow` client), never `pipeline` modules, because the refactor moves
them.

Regenerate the golden (only when a behaviour change is intended, and say so in the commit):
    TCWAE_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/pipeline/test_golden_sweep.py -q
It was written from the pre-refactor code (whose tests/ was still flat), on the same venv, with:
    git worktree add /work/golden 58a5c49 && mkdir -p /work/golden/tests/pipeline && \
        cp tests/golden_records.py /work/golden/tests/ && \
        cp tests/pipeline/test_golden_sweep.py /work/golden/tests/pipeline/ && cd /work/golden && \
        TCWAE_WRITE_GOLDEN=1 PYTHONPATH=/work/golden:/work/golden/tests \
        /work/main/.venv/bin/python -m pytest tests/pipeline/test_golden_sweep.py -q
    (then copy /work/golden/tests/golden/smoke_sweep.json here; git worktree remove /work/golden)

What a record holds: the ranked table as printed (exact text) and as `report/ranking.csv`
(ranking order exact, numbers with a tolerance); the experiments and their tags; for each run
(the parent, keyed "sweep", and each trial, keyed by method, searched parameters and seed as
MLflow holds them, never by run id): status, name, params (exact strings), tags, every metric's
step-wise history and its artifact paths; the logged models and registered model versions, keyed
by the run that made them. Left out (volatile: they differ between two runs of the same code):
run, trial and model ids (replaced by placeholders), the temporary folder (`<tmp>`), times,
durations and speeds (`startup_s`, `wall_time_s`, `train/steps_per_second`: they measure the
machine), the host, git commit and package versions.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).resolve().parent / "golden" / "smoke_sweep.json"
PARENT_TAG = "mlflow.parentRunId"
PARENT_KEY = "sweep"
# The machine and checkout, not the code's behaviour.
VOLATILE_TAGS = frozenset(
    {
        "git_commit",
        "host",
        "mlflow_version",
        "python_version",
        "ray_version",
        "torch_version",
        "mlflow.user",
        "mlflow.source.name",
        "mlflow.source.type",
        "mlflow.source.git.commit",
    }
)
# Metrics that time the machine (start-up, wall time, throughput): never equal twice.
TIMING_METRIC = re.compile(r"(^|[/_])(startup_s|wall_time_s|steps_per_second|\w*_seconds)$")
# A float32 CPU kernel gives other last bits on AVX2 and AVX-512 (other vector widths reduce in
# another order), so values are compared to rel 1e-4 instead of exactly; on this machine two
# runs agree to the bit. Caveat: the smoke sweep's four Rec scores differ by float32 rounding,
# so on another CPU the ranking order (compared exactly) may change: regenerate there.
REL_TOL = 1e-4
ABS_TOL = 1e-6
HEX_RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")
MODEL_ID = re.compile(r"\bm-[0-9a-f]{32}\b")
EXPANDED_LEVELS = 3  # record / runs / run key: deeper values take one line each


def printed_table(output: str) -> list[str]:
    """The ranked table the sweep printed at its end: from its header to the `best:` line."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"#\s+configuration\s", line)]
    if not starts:
        return []
    table = []
    for line in lines[starts[-1] :]:
        table.append(line.rstrip())
        if line.startswith("best:"):
            break
    return table


def trial_key(params: Mapping[str, str], searched: Mapping[str, list[str]]) -> str:
    """A trial's stable name: its method, the parameters its method searches (as MLflow holds
    them, so a changed format shows) and its seed."""
    method = params.get("method", "?")
    parts = [f"{name}={params.get(name, '<missing>')}" for name in searched.get(method, [])]
    return " ".join([method, *parts, f"seed={params.get('seed', '<missing>')}"])


def _number_or_text(cell: str) -> float | str:
    try:
        value = float(cell)
    except ValueError:
        return cell
    return value if math.isfinite(value) else cell


def _finite_or_text(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _artifacts(list_entries: Any) -> list[str]:
    """Every artifact file under a run's or logged model's root (`list_entries(folder)`)."""
    found, pending = [], [None]
    while pending:
        folder = pending.pop()
        for info in list_entries(folder):
            (pending if info.is_dir else found).append(info.path)
    return sorted(found)


class _Normalizer:
    """Replaces what differs between two runs of the same code (temporary folder, run, model and
    trial ids) with placeholders; a run id becomes its run's key."""

    def __init__(self, tmp: Path, run_keys: dict[str, str], trial_ids: list[str]) -> None:
        self.tmp, self.run_keys, self.trial_ids = str(tmp), run_keys, trial_ids

    def __call__(self, text: str) -> str:
        text = text.replace(self.tmp, "<tmp>")
        text = MODEL_ID.sub("m-<model>", text)
        text = HEX_RUN_ID.sub(lambda m: f"<run {self.run_keys.get(m.group(), '?')}>", text)
        for trial_id in self.trial_ids:
            text = text.replace(trial_id, "<trial>")
        return text


def capture(
    client: Any, tmp: Path, output: str, searched: Mapping[str, list[str]], experiment: str
) -> dict[str, Any]:
    """The record of the finished sweep whose store `client` reads (see the module's doc)."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    keys = {run.info.run_id: trial_key(run.data.params, searched) for run in runs}
    keys.update({run.info.run_id: PARENT_KEY for run in parents})
    sweep_names = {run.info.run_name for run in parents}
    trial_ids = [
        run.info.run_name.removeprefix(f"{name}-")
        for run in runs
        for name in sweep_names
        if run.info.run_name.startswith(f"{name}-")
    ]
    norm = _Normalizer(tmp, keys, trial_ids)
    record: dict[str, Any] = {
        "printed_table": [norm(line) for line in printed_table(output)],
        "experiments": {
            e.name: {k: norm(v) for k, v in e.tags.items()} for e in client.search_experiments()
        },
        "runs": {},
    }
    for run in runs:
        key = keys[run.info.run_id]
        if key in record["runs"]:
            raise AssertionError(f"two runs have the key {key!r}")
        record["runs"][key] = _run_record(client, run, norm)
    if parents:
        record["ranking"] = _ranking(client, parents[0].info.run_id, tmp)
    record["logged_models"] = {
        keys.get(model.source_run_id, "?"): {
            "name": model.name,
            "status": str(model.status),
            "tags": {k: norm(v) for k, v in model.tags.items()},
            "params": dict(model.params),
            "metrics": sorted(metric.key for metric in model.metrics or []),
            "artifacts": _artifacts(
                lambda f, m=model.model_id: client.list_logged_model_artifacts(m, f)
            ),
        }
        for model in client.search_logged_models([exp.experiment_id])
    }
    record["registered_models"] = {
        model.name: {
            "aliases": {alias: str(v) for alias, v in model.aliases.items()},
            "tags": dict(model.tags),
            "versions": {
                str(version.version): {
                    "run": keys.get(version.run_id, "?"),
                    "tags": {k: norm(v) for k, v in version.tags.items()},
                    "source": norm(version.source),
                }
                for version in client.search_model_versions(f"name = '{model.name}'")
            },
        }
        for model in client.search_registered_models()
    }
    return record


def _run_record(client: Any, run: Any, norm: _Normalizer) -> dict[str, Any]:
    history = {}
    for key in sorted(run.data.metrics):
        if TIMING_METRIC.search(key):
            continue
        points = client.get_metric_history(run.info.run_id, key)
        history[key] = [
            [point.step, _finite_or_text(point.value)]
            for point in sorted(points, key=lambda p: (p.step, p.timestamp))
        ]
    return {
        "name": norm(run.info.run_name),
        "status": run.info.status,
        "params": dict(run.data.params),
        "tags": {k: norm(v) for k, v in run.data.tags.items() if k not in VOLATILE_TAGS},
        "metric_keys": sorted(run.data.metrics),
        "metrics": history,
        "artifacts": _artifacts(lambda folder: client.list_artifacts(run.info.run_id, folder)),
    }


def _ranking(client: Any, parent_run_id: str, tmp: Path) -> dict[str, Any]:
    """`report/ranking.csv` of the parent run: the column order, and each ranked row (run ids
    dropped: the rows' labels and the runs' keys already match them)."""
    folder = tmp / "golden-download"
    folder.mkdir(exist_ok=True)
    path = client.download_artifacts(parent_run_id, "report/ranking.csv", str(folder))
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    columns = list(rows[0]) if rows else []
    return {
        "columns": columns,
        "order": [row["label"] for row in rows],
        "rows": [{k: _number_or_text(v) for k, v in row.items() if k != "run_ids"} for row in rows],
    }


def _same(golden: Any, now: Any) -> bool:
    numbers = (int, float)
    if isinstance(golden, numbers) and isinstance(now, numbers) and not isinstance(now, bool):
        return math.isclose(golden, now, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return golden == now


def _brief(value: Any) -> str:
    return f"{{{len(value)} keys}}" if isinstance(value, dict) else repr(value)


def _diff(golden: Any, now: Any, path: str, lines: list[str]) -> None:
    if isinstance(golden, dict) and isinstance(now, dict):
        for key in sorted(golden.keys() | now.keys()):
            inner = f"{path}/{key}" if path else str(key)
            if key not in now:
                lines.append(f"- {inner}: {_brief(golden[key])} (golden only)")
            elif key not in golden:
                lines.append(f"+ {inner}: {_brief(now[key])} (new)")
            else:
                _diff(golden[key], now[key], inner, lines)
    elif isinstance(golden, list) and isinstance(now, list):
        if all(isinstance(item, str) for item in golden + now):
            if golden != now:  # lines of text, or sets of names: a line diff
                lines.append(f"~ {path} (- golden, + now):")
                changed = difflib.ndiff(golden, now)
                lines.extend(f"    {line}" for line in changed if line[:1] in "-+")
            return
        if len(golden) != len(now):
            lines.append(f"~ {path}: golden has {len(golden)} items, now {len(now)}")
        for index, (old, new) in enumerate(zip(golden, now, strict=False)):
            _diff(old, new, f"{path}[{index}]", lines)
    elif not _same(golden, now):
        lines.append(f"~ {path}: golden {golden!r} != now {now!r}")


def differences(golden: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One line per value that is missing, new or different (numbers beyond the tolerance); a
    run found on one side only (its key, made of param strings, changed) is one line."""
    lines: list[str] = []
    _diff(golden, now, "", lines)
    return lines


def _dump(value: Any, depth: int = 0, indent: str = "") -> str:
    """JSON with one line per leaf down to the runs' fields (a run's params on one line), so the
    golden stays a short file whose git diff still says which field changed."""
    if depth >= EXPANDED_LEVELS or not isinstance(value, dict | list) or not value:
        return json.dumps(value, sort_keys=True)
    inner = indent + " "
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k)}: {_dump(value[k], depth + 1, inner)}" for k in sorted(value)
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    items = [inner + _dump(item, depth + 1, inner) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + indent + "]"


def write(record: dict[str, Any], path: Path = GOLDEN_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(record) + "\n")


def read(path: Path = GOLDEN_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())
