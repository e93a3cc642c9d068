"""RESULTS.md: our runs beside the paper's Table 1a (dSprites), and the paper's claims checked.

`write_results_md` takes one row per method (mean and std over seeds, from `report_ranking`) and
writes the sweep's own section of the page atomically, keeping the other sections; the claims
are also checked at every training step that MIG was logged (`budget_steps`), which is how the
training budget was chosen.
"""

from __future__ import annotations

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
    display_name,
    mean_and_std,
    mean_std_text,
)
from tcwae.atomic import write_text_atomically
from tcwae.metrics import PAPER_SCORES, SCORES
from tcwae.values import is_finite_number

EXTRA_SCORES = tuple(score for score in SCORES if score not in PAPER_SCORES)


# Paper (seed 001) Table 1a, dSprites, 5 seeds, 300k iterations: (mean, std) per score.
PAPER_TABLE_1A: dict[str, dict[str, Any]] = {
    "wae_mmd": {
        "rec": (3.01, 0.03),
        "mig": (0.026, 0.006),
        "factor_vae": (0.52, 0.06),
        "sap": (0.010, 0.004),
    },
    "tcwae_mws": {
        "rec": (4.16, 0.31),
        "mig": (0.36, 0.04),
        "factor_vae": (0.75, 0.02),
        "sap": (0.091, 0.004),
    },
    "tcwae_gan": {
        "rec": (3.57, 0.19),
        "mig": (0.34, 0.09),
        "factor_vae": (0.78, 0.09),
        "sap": (0.071, 0.025),
    },
    "beta_tcvae": {
        "rec": (3.73, 0.09),
        "mig": (0.25, 0.05),
        "factor_vae": (0.76, 0.11),
        "sap": (0.081, 0.005),
    },
    "factor_vae": {
        "rec": (3.47, 0.13),
        "mig": (0.26, 0.09),
        "factor_vae": (0.70, 0.05),
        "sap": (0.070, 0.030),
    },
}


TCWAE_METHODS = ("tcwae_mws", "tcwae_gan")


SCORES_VS_REC_CAPTION = "Scores against reconstruction along beta (paper Fig. 3)"


METHOD_SCORES_CAPTION = "Scores against reconstruction, every run and each method's mean ± std"


MIG_CURVE_CAPTION = "MIG against training steps, mean ± std over seeds (the budget choice)"


MIG_CURVE_TITLE = "MIG during training, mean ± std over seeds"


@dataclass(frozen=True)
class Claim:
    statement: str
    holds: bool | None  # None: the measurements cannot decide (a method or a std is missing)
    detail: str


def check_claims(table: Sequence[Mapping[str, Any]]) -> list[Claim]:
    """The three claims of issue 8 on one row per method (mean and std over seeds). "Within /
    by more than k standard deviations" uses the larger of the two rows' standard deviations."""
    rows = {row["method"]: row for row in table}
    return [_claim_mig_above_wae(rows), _claim_wae_lowest_rec(rows), _claim_mig_on_par(rows)]


def _claim_mig_above_wae(rows: Mapping[str, Mapping[str, Any]]) -> Claim:
    statement = "TCWAE-MWS and TCWAE-GAN MIG exceed WAE MIG by more than three standard deviations"
    needed = ("tcwae_mws", "tcwae_gan", "wae_mmd")
    problem = _undecidable(rows, needed, "mig")
    if problem:
        return Claim(statement, None, problem)
    wae = rows["wae_mmd"]
    verdicts, details = [], []
    for method in ("tcwae_mws", "tcwae_gan"):
        row = rows[method]
        std = max(row["mig_std"], wae["mig_std"])
        gap = row["mig"] - wae["mig"]
        verdicts.append(gap > 3 * std)
        details.append(
            f"{METHOD_LABELS[method]} - WAE = {gap:.3f} "
            f"{'>' if gap > 3 * std else '<='} 3 x {std:.3f} = {3 * std:.3f}"
        )
    return Claim(statement, all(verdicts), "; ".join(details))


def _claim_wae_lowest_rec(rows: Mapping[str, Mapping[str, Any]]) -> Claim:
    statement = "WAE has the lowest reconstruction error"
    if "wae_mmd" not in rows or not is_finite_number(rows["wae_mmd"].get("rec")):
        return Claim(statement, None, "no WAE reconstruction error")
    others = {
        m: r["rec"] for m, r in rows.items() if m != "wae_mmd" and is_finite_number(r.get("rec"))
    }
    if not others:
        return Claim(statement, None, "no other method's reconstruction error")
    lowest_other = min(others, key=others.get)
    wae_rec = rows["wae_mmd"]["rec"]
    holds = wae_rec < others[lowest_other]
    return Claim(
        statement,
        holds,
        f"WAE {wae_rec:.3f} {'<' if holds else '>='} lowest other "
        f"{METHOD_LABELS.get(lowest_other, lowest_other)} {others[lowest_other]:.3f}",
    )


def _claim_mig_on_par(rows: Mapping[str, Mapping[str, Any]]) -> Claim:
    statement = "TCWAE MIG is within one standard deviation of, or above, beta-TCVAE and FactorVAE"
    needed = ("tcwae_mws", "tcwae_gan", "beta_tcvae", "factor_vae")
    problem = _undecidable(rows, needed, "mig")
    if problem:
        return Claim(statement, None, problem)
    verdicts, details = [], []
    for method in ("tcwae_mws", "tcwae_gan"):
        for baseline in ("beta_tcvae", "factor_vae"):
            row, base = rows[method], rows[baseline]
            std = max(row["mig_std"], base["mig_std"])
            holds = row["mig"] >= base["mig"] - std
            verdicts.append(holds)
            details.append(
                f"{METHOD_LABELS[method]} {row['mig']:.3f} {'>=' if holds else '<'} "
                f"{METHOD_LABELS[baseline]} {base['mig']:.3f} - {std:.3f}"
            )
    return Claim(statement, all(verdicts), "; ".join(details))


@dataclass(frozen=True)
class BudgetStep:
    """MIG of every method at one training step (mean, std over seeds) and the two MIG claims."""

    step: int
    mig: Mapping[str, tuple[float, float]]
    above_wae: Claim
    on_par: Claim


def curves_by_method(
    runs: Sequence[Mapping[str, Any]], histories: Mapping[str, Mapping[int, float]]
) -> dict[str, dict[int, list[float]]]:
    """method -> step -> the values of its runs (one per seed), from each run's metric history
    keyed by run id; a step is kept only where every run of the method logged it."""
    by_method: dict[str, list[Mapping[int, float]]] = {}
    for run in runs:
        history = histories.get(run["run_id"])
        if history:
            by_method.setdefault(run["method"], []).append(history)
    curves = {}
    for method, members in by_method.items():
        steps = set.intersection(*(set(history) for history in members))
        curves[method] = {step: [history[step] for history in members] for step in sorted(steps)}
    return curves


def budget_steps(curves: Mapping[str, Mapping[int, Sequence[float]]]) -> list[BudgetStep]:
    """The two MIG claims of issue 8 checked at every step that all methods logged: where along
    training the comparison becomes (and stays) what the final table says."""
    if not curves:
        return []
    steps = sorted(set.intersection(*(set(curve) for curve in curves.values())))
    result = []
    for step in steps:
        rows = {}
        for method, curve in curves.items():
            mean, std = mean_and_std(curve[step])
            rows[method] = {"method": method, "mig": mean, "mig_std": std}
        result.append(
            BudgetStep(
                step=step,
                mig={method: (row["mig"], row["mig_std"]) for method, row in rows.items()},
                above_wae=_claim_mig_above_wae(rows),
                on_par=_claim_mig_on_par(rows),
            )
        )
    return result


def holds_from(budget: Sequence[BudgetStep], which: str) -> int | None:
    """The first step from which a claim ('above_wae' or 'on_par') holds at every later step."""
    first = None
    for entry in budget:
        if getattr(entry, which).holds:
            first = entry.step if first is None else first
        else:
            first = None
    return first


def _undecidable(rows: Mapping[str, Mapping[str, Any]], methods: Sequence[str], score: str) -> str:
    missing = [
        METHOD_LABELS[m]
        for m in methods
        if m not in rows or not is_finite_number(rows[m].get(score))
    ]
    if missing:
        return f"no {SCORE_LABELS[score]} for {', '.join(missing)}"
    no_std = [
        METHOD_LABELS[m] for m in methods if not is_finite_number(rows[m].get(f"{score}_std"))
    ]
    if no_std:
        return f"no standard deviation (fewer than 2 seeds) for {', '.join(no_std)}"
    return ""


def write_results_md(
    table: Sequence[Mapping[str, Any]],
    paper_table: Mapping[str, Mapping[str, Any]],
    budget: str,
    machine: str,
    figures: Mapping[str, str | Path],
    path: str | Path,
    budget_curve: Sequence[BudgetStep] = (),
    sweep: str = "",
) -> list[Claim]:
    """Write the sweep's section of RESULTS.md (`table_1a_heading(sweep)`; the rest of the page is
    kept): ours (mean +- std over seeds) beside the paper's Rec, MIG, FactorVAE and SAP, our DCI
    and InfoMEC, the budget and machine, the three claims as computed, and the figures (copied
    next to the file, in `<stem>_figures/`, named after the sweep, so the page is
    self-contained). `table` has one row per method (e.g. `best_per_method` values). Returns the
    claims."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {row["method"]: row for row in table}
    methods = [*paper_table, *(m for m in rows if m not in paper_table)]
    claims = check_claims(table)
    lines = [
        f"**Budget:** {budget}",
        "",
        f"**Machine:** {machine}",
        "",
        "Ours: mean ± standard deviation over seeds (n = number of seeds). Paper: seed 001,",
        "Table 1a (5 seeds, 300k iterations, batch 256), at the same hyper-parameters. Our Rec is",
        "the mean per-image reconstruction cost (cross-entropy summed over pixels); the paper does",
        "not state the unit of its Rec column, so compare Rec between methods, not with the paper.",
        "",
    ]
    header = ["Method", "n"]
    for score in PAPER_SCORES:
        header += [f"{SCORE_LABELS[score]} (ours)", f"{SCORE_LABELS[score]} (paper)"]
    lines += markdown_table(
        header,
        [
            [
                display_name(rows[m]) if m in rows else METHOD_LABELS.get(m, m),
                str(rows[m]["n"]) if m in rows else "0",
                *[
                    cell
                    for score in PAPER_SCORES
                    for cell in (
                        mean_std_text(rows[m].get(score), rows[m].get(f"{score}_std"))
                        if m in rows
                        else "not run",
                        _paper_cell(paper_table.get(m, {}), score),
                    )
                ],
            ]
            for m in methods
        ],
    )
    lines += ["", "Disentanglement beyond the paper's scores (ours only):", ""]
    lines += markdown_table(
        ["Method", *[SCORE_LABELS[s] for s in EXTRA_SCORES]],
        [
            [
                display_name(rows[m]),
                *[mean_std_text(rows[m].get(s), rows[m].get(f"{s}_std")) for s in EXTRA_SCORES],
            ]
            for m in methods
            if m in rows
        ],
    )
    lines += ["", "### The paper's claims, checked on these numbers", ""]
    for claim in claims:
        verdict = {True: "holds", False: "does not hold", None: "cannot tell"}[claim.holds]
        lines.append(f"- **{verdict}**: {claim.statement}. {claim.detail}.")
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
    """The RESULTS.md section a dSprites sweep owns: running the same sweep again replaces it,
    another sweep adds its own."""
    heading = "## Paper Table 1a (dSprites), our runs beside the paper's"
    return f"{heading}: sweep `{sweep}`" if sweep else heading


def _budget_section(budget: Sequence[BudgetStep], methods: Sequence[str]) -> list[str]:
    present = [m for m in methods if m in budget[0].mig]
    lines = [
        "",
        "### Budget: MIG against training steps",
        "",
        "MIG of every run logged during training (`mig_every`, same sample size as the final",
        "MIG, a fresh draw at each step), mean ± std over seeds, with the two MIG claims checked",
        "at each step. This is how the budget was chosen: the comparison is stable from the step",
        "at which a claim starts holding for every later step.",
        "",
    ]
    verdict = {True: "holds", False: "no", None: "-"}
    lines += markdown_table(
        ["Step", *[METHOD_LABELS.get(m, m) for m in present], "TCWAE > WAE + 3 std", "on par"],
        [
            [
                str(entry.step),
                *[mean_std_text(*entry.mig[m]) for m in present],
                verdict[entry.above_wae.holds],
                verdict[entry.on_par.holds],
            ]
            for entry in budget
        ],
    )
    lines.append("")
    for which, name in (("above_wae", "TCWAE > WAE + 3 std"), ("on_par", "on par")):
        first = holds_from(budget, which)
        if first is not None:
            stable = f"holds from step {first} to the last step logged"
        elif all(getattr(entry, which).holds is None for entry in budget):
            stable = "cannot tell (a method or a standard deviation is missing)"
        else:
            stable = "does not hold at the last step logged"
        lines.append(f"- *{name}*: {stable}.")
    return lines


def describe_budget(runs: Sequence[Mapping[str, Any]]) -> str:
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
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def _paper_cell(paper_row: Mapping[str, Any], score: str) -> str:
    if score not in paper_row:
        return "—"
    return mean_std_text(*paper_row[score])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def write_section(path: str | Path, heading: str, body: str) -> None:
    """Replace (or add) the section `heading` of the RESULTS.md at `path`, keeping the rest of the
    page; written under a temporary name and renamed."""
    path = Path(path)
    old = path.read_text() if path.exists() else "# Results\n"
    write_text_atomically(path, replace_section(old, heading, body))


def replace_section(text: str, heading: str, body: str) -> str:
    """`text` with the `## ` section named `heading` replaced by `body` (or `body` appended after
    one blank line); the rest of `text` is kept as it is."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        before, after = lines, []
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
        before, after = lines[:start], lines[end:] if end is not None else []
    while before and not before[-1].strip():
        before.pop()
    section = [heading, "", body.strip(), ""]
    return (
        "\n".join([*before, "", *section, *after] if before else [*section, *after]).rstrip("\n")
        + "\n"
    )
