"""RESULTS.md: our runs beside the paper's Table 1a (dSprites), and the paper's claims checked,
also at every training step that MIG was logged (`budget_steps`: how the budget was chosen).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.report_ranking import (
    METHOD_LABELS,
    SCORE_LABELS,
    Row,
    Rows,
    display_name,
    mean_and_std,
    mean_std_text,
    score_cell,
)
from tcwae.atomic import write_text_atomically
from tcwae.metrics import PAPER_SCORES, SCORES
from tcwae.values import is_finite_number

EXTRA_SCORES = tuple(score for score in SCORES if score not in PAPER_SCORES)
# Paper (seed 001) Table 1a, dSprites, 5 seeds, 300k iterations: (mean, std) per score.
PAPER_TABLE_1A: dict[str, dict[str, Any]] = {
    method: dict(zip(("rec", "mig", "factor_vae", "sap"), values, strict=True))
    for method, values in {
        "wae_mmd": ((3.01, 0.03), (0.026, 0.006), (0.52, 0.06), (0.010, 0.004)),
        "tcwae_mws": ((4.16, 0.31), (0.36, 0.04), (0.75, 0.02), (0.091, 0.004)),
        "tcwae_gan": ((3.57, 0.19), (0.34, 0.09), (0.78, 0.09), (0.071, 0.025)),
        "beta_tcvae": ((3.73, 0.09), (0.25, 0.05), (0.76, 0.11), (0.081, 0.005)),
        "factor_vae": ((3.47, 0.13), (0.26, 0.09), (0.70, 0.05), (0.070, 0.030)),
    }.items()
}
TCWAE_METHODS = ("tcwae_mws", "tcwae_gan")
SCORES_VS_REC_CAPTION = "Scores against reconstruction along beta (paper Fig. 3)"
METHOD_SCORES_CAPTION = "Scores against reconstruction, every run and each method's mean ± std"
MIG_CURVE_CAPTION = "MIG against training steps, mean ± std over seeds (the budget choice)"
MIG_CURVE_TITLE = "MIG during training, mean ± std over seeds"
# The two MIG claims: statement, the baselines TCWAE's MIG is compared with, short name.
MIG_CLAIMS = {
    "above_wae": (
        "TCWAE-MWS and TCWAE-GAN MIG exceed WAE MIG by more than three standard deviations",
        ("wae_mmd",),
        "TCWAE > WAE + 3 std",
    ),
    "on_par": (
        "TCWAE MIG is within one standard deviation of, or above, beta-TCVAE and FactorVAE",
        ("beta_tcvae", "factor_vae"),
        "on par",
    ),
}


@dataclass(frozen=True)
class Claim:
    statement: str
    holds: bool | None  # None: the measurements cannot decide (a method or a std is missing)
    detail: str


def check_claims(table: Rows) -> list[Claim]:
    """Issue 8's three claims on one row per method; k stds are the larger of the two rows'."""
    rows = {row["method"]: row for row in table}
    return [_mig_claim(rows, "above_wae"), _claim_wae_lowest_rec(rows), _mig_claim(rows, "on_par")]


def _mig_claim(rows: Mapping[str, Row], which: str) -> Claim:
    """TCWAE's MIG against the baselines of `MIG_CLAIMS[which]`."""
    statement, baselines, _ = MIG_CLAIMS[which]
    problem = _undecidable(rows, (*TCWAE_METHODS, *baselines), "mig")
    if problem:
        return Claim(statement, None, problem)
    verdicts, details = [], []
    for method in TCWAE_METHODS:
        for baseline in baselines:
            row, base = rows[method], rows[baseline]
            std = max(row["mig_std"], base["mig_std"])
            if which == "above_wae":
                gap = row["mig"] - base["mig"]
                holds = gap > 3 * std
                detail = (
                    f"{METHOD_LABELS[method]} - WAE = {gap:.3f} "
                    f"{'>' if holds else '<='} 3 x {std:.3f} = {3 * std:.3f}"
                )
            else:
                holds = row["mig"] >= base["mig"] - std
                detail = (
                    f"{METHOD_LABELS[method]} {row['mig']:.3f} {'>=' if holds else '<'} "
                    f"{METHOD_LABELS[baseline]} {base['mig']:.3f} - {std:.3f}"
                )
            verdicts.append(holds)
            details.append(detail)
    return Claim(statement, all(verdicts), "; ".join(details))


def _claim_wae_lowest_rec(rows: Mapping[str, Row]) -> Claim:
    statement = "WAE has the lowest reconstruction error"
    wae = rows.get("wae_mmd", {}).get("rec")
    if not is_finite_number(wae):
        return Claim(statement, None, "no WAE reconstruction error")
    others = {
        m: r["rec"] for m, r in rows.items() if m != "wae_mmd" and is_finite_number(r.get("rec"))
    }
    if not others:
        return Claim(statement, None, "no other method's reconstruction error")
    lowest = min(others, key=others.get)
    holds = wae < others[lowest]
    name = METHOD_LABELS.get(lowest, lowest)
    detail = f"WAE {wae:.3f} {'<' if holds else '>='} lowest other {name} {others[lowest]:.3f}"
    return Claim(statement, holds, detail)


@dataclass(frozen=True)
class BudgetStep:
    """MIG of every method at one training step (mean, std over seeds) and the two MIG claims."""

    step: int
    mig: Mapping[str, tuple[float, float]]
    above_wae: Claim
    on_par: Claim


def curves_by_method(
    runs: Rows, histories: Mapping[str, Mapping[int, float]]
) -> dict[str, dict[int, list[float]]]:
    """method -> step -> its runs' values (one per seed), at the steps all of them logged."""
    by_method: dict[str, list[Mapping[int, float]]] = {}
    for run in runs:
        if history := histories.get(run["run_id"]):
            by_method.setdefault(run["method"], []).append(history)
    curves = {}
    for method, members in by_method.items():
        steps = sorted(set.intersection(*(set(history) for history in members)))
        curves[method] = {step: [history[step] for history in members] for step in steps}
    return curves


def budget_steps(curves: Mapping[str, Mapping[int, Sequence[float]]]) -> list[BudgetStep]:
    """The two MIG claims at every step all methods logged: when the final comparison settles."""
    if not curves:
        return []
    result = []
    for step in sorted(set.intersection(*(set(curve) for curve in curves.values()))):
        mig = {method: mean_and_std(curve[step]) for method, curve in curves.items()}
        rows = {method: {"mig": mean, "mig_std": std} for method, (mean, std) in mig.items()}
        result.append(BudgetStep(step, mig, **{w: _mig_claim(rows, w) for w in MIG_CLAIMS}))
    return result


def holds_from(budget: Sequence[BudgetStep], which: str) -> int | None:
    """The first step from which a claim ('above_wae' or 'on_par') holds at every later step."""
    first = None
    for entry in budget:
        holds = getattr(entry, which).holds
        first = (entry.step if first is None else first) if holds else None
    return first


def _undecidable(rows: Mapping[str, Row], methods: Sequence[str], score: str) -> str:
    """Why the claim cannot be decided ('' when it can): a method or a std is missing."""
    if missing := [m for m in methods if not is_finite_number(rows.get(m, {}).get(score))]:
        return f"no {SCORE_LABELS[score]} for {', '.join(METHOD_LABELS[m] for m in missing)}"
    if no_std := [m for m in methods if not is_finite_number(rows[m].get(f"{score}_std"))]:
        names = ", ".join(METHOD_LABELS[m] for m in no_std)
        return f"no standard deviation (fewer than 2 seeds) for {names}"
    return ""


def write_results_md(
    table: Rows,
    paper_table: Mapping[str, Row],
    budget: str,
    machine: str,
    figures: Mapping[str, str | Path],
    path: str | Path,
    budget_curve: Sequence[BudgetStep] = (),
    sweep: str = "",
) -> list[Claim]:
    """Write the sweep's section of RESULTS.md (`table_1a_heading`; the rest is kept) from one row
    per method: ours beside the paper, our other scores, the claims, the budget curve and the
    figures (copied to `<stem>_figures/`, so the page is self-contained). Returns the claims."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {row["method"]: row for row in table}
    methods = [*paper_table, *(m for m in rows if m not in paper_table)]
    claims = check_claims(table)
    lines = [f"**Budget:** {budget}", "", f"**Machine:** {machine}", ""]
    lines += [
        "Ours: mean ± standard deviation over seeds (n = number of seeds). Paper: seed 001,",
        "Table 1a (5 seeds, 300k iterations, batch 256), at the same hyper-parameters. Our Rec is",
        "the mean per-image reconstruction cost (cross-entropy summed over pixels); the paper does",
        "not state the unit of its Rec column, so compare Rec between methods, not with the paper.",
        "",
    ]
    labels = [f"{SCORE_LABELS[s]} ({who})" for s in PAPER_SCORES for who in ("ours", "paper")]
    cells = []
    for method in methods:
        row, paper = rows.get(method), paper_table.get(method, {})
        line = (
            [display_name(row), str(row["n"])] if row else [METHOD_LABELS.get(method, method), "0"]
        )
        for score in PAPER_SCORES:
            line.append(score_cell(row, score) if row else "not run")
            line.append(mean_std_text(*paper[score]) if score in paper else "—")
        cells.append(line)
    lines += markdown_table(["Method", "n", *labels], cells)
    lines += ["", "Disentanglement beyond the paper's scores (ours only):", ""]
    lines += markdown_table(
        ["Method", *[SCORE_LABELS[s] for s in EXTRA_SCORES]],
        [
            [display_name(rows[m]), *[score_cell(rows[m], s) for s in EXTRA_SCORES]]
            for m in methods
            if m in rows
        ],
    )
    lines += ["", "### The paper's claims, checked on these numbers", ""]
    verdicts = {True: "holds", False: "does not hold", None: "cannot tell"}
    lines += [f"- **{verdicts[c.holds]}**: {c.statement}. {c.detail}." for c in claims]
    lines += [
        "",
        '"Within" / "by more than" k standard deviations uses the larger of the two methods\'',
        "standard deviations.",
    ]
    if budget_curve:
        lines += _budget_section(budget_curve, methods)
    if figures:
        figure_dir = path.parent / f"{path.stem}_figures"
        figure_dir.mkdir(parents=True, exist_ok=True)
        lines += ["", "### Figures", ""]
        prefix = re.sub(r"[^\w.-]", "-", sweep) + "_" if sweep else ""
        for caption, source in figures.items():
            target = figure_dir / f"{prefix}{Path(source).name}"
            if Path(source).resolve() != target.resolve():
                shutil.copyfile(source, target)
            lines += [f"{caption}:", "", f"![{caption}]({target.relative_to(path.parent)})", ""]
    write_section(path, table_1a_heading(sweep), "\n".join(lines))
    return claims


def table_1a_heading(sweep: str = "") -> str:
    """The RESULTS.md section a dSprites sweep owns (replaced when the same sweep runs again)."""
    heading = "## Paper Table 1a (dSprites), our runs beside the paper's"
    return f"{heading}: sweep `{sweep}`" if sweep else heading


def _budget_section(budget: Sequence[BudgetStep], methods: Sequence[str]) -> list[str]:
    present = [m for m in methods if m in budget[0].mig]
    lines = ["", "### Budget: MIG against training steps", ""]
    lines += [
        "MIG of every run logged during training (`mig_every`, same sample size as the final",
        "MIG, a fresh draw at each step), mean ± std over seeds, with the two MIG claims checked",
        "at each step. This is how the budget was chosen: the comparison is stable from the step",
        "at which a claim starts holding for every later step.",
        "",
    ]
    verdict = {True: "holds", False: "no", None: "-"}
    names = [name for _, _, name in MIG_CLAIMS.values()]
    lines += markdown_table(
        ["Step", *[METHOD_LABELS.get(m, m) for m in present], *names],
        [
            [
                str(entry.step),
                *[mean_std_text(*entry.mig[m]) for m in present],
                *[verdict[getattr(entry, which).holds] for which in MIG_CLAIMS],
            ]
            for entry in budget
        ],
    )
    lines.append("")
    for which, name in zip(MIG_CLAIMS, names, strict=True):
        first = holds_from(budget, which)
        if first is not None:
            stable = f"holds from step {first} to the last step logged"
        elif all(getattr(entry, which).holds is None for entry in budget):
            stable = "cannot tell (a method or a standard deviation is missing)"
        else:
            stable = "does not hold at the last step logged"
        lines.append(f"- *{name}*: {stable}.")
    return lines


def describe_budget(runs: Rows) -> str:
    """The training budget the runs share, read from their configurations."""

    def values(key: str) -> str:
        return ", ".join(str(v) for v in sorted({run[key] for run in runs if key in run}))

    seeds = sorted({run["seed"] for run in runs})
    return (
        f"{values('steps')} steps at batch {values('batch_size')}, seeds {seeds} "
        f"({len(runs)} trials), metric profile {values('eval_profile')}, "
        f"data source {values('data_source')}"
    )


def describe_machine() -> str:
    """This machine in one line (the one that ran the sweep when the report follows it)."""
    text = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    with contextlib.suppress(ImportError):
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def write_section(path: str | Path, heading: str, body: str) -> None:
    """Replace (or add) the section `heading` of the page at `path` atomically, keeping the rest."""
    path = Path(path)
    old = path.read_text() if path.exists() else "# Results\n"
    write_text_atomically(path, replace_section(old, heading, body))


def replace_section(text: str, heading: str, body: str) -> str:
    """`text` with its `## ` section `heading` replaced by `body` (or appended); the rest kept."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before, after = lines[:start], lines[end:]
    while before and not before[-1].strip():
        before.pop()
    section = [heading, "", body.strip(), ""]
    page = "\n".join([*before, "", *section, *after] if before else [*section, *after])
    return page.rstrip("\n") + "\n"
