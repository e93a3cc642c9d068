"""RESULTS.md: the paper's claims, the budget curve and the sweep's own section of the page."""

import math

import pytest

from pipeline.report_results import (
    PAPER_TABLE_1A,
    budget_steps,
    check_claims,
    curves_by_method,
    holds_from,
    replace_section,
    table_1a_heading,
    write_results_md,
)

SPREAD = 0.01
PAPER_VALUES = {
    "wae_mmd": {"lam": 200.0},
    "tcwae_mws": {"beta": 50.0, "gamma": 100.0},
    "tcwae_gan": {"beta": 100.0, "gamma": 5.0},
    "beta_tcvae": {"beta": 8.0, "gamma": 1.0},
    "factor_vae": {"gamma": 100.0},
}


def method_row(method, mig, mig_std, rec, rec_std=0.1, n=3):
    return {
        "method": method,
        **PAPER_VALUES[method],
        "label": method,
        "n": n,
        "mig": mig,
        "mig_std": mig_std,
        "rec": rec,
        "rec_std": rec_std,
        "factor_vae": 0.7,
        "factor_vae_std": 0.05,
        "sap": 0.05,
        "sap_std": 0.01,
    }


def paper_like_table(**changes):
    rows = {
        "wae_mmd": method_row("wae_mmd", 0.02, 0.005, 3.0),
        "tcwae_mws": method_row("tcwae_mws", 0.36, 0.04, 4.1),
        "tcwae_gan": method_row("tcwae_gan", 0.34, 0.05, 3.6),
        "beta_tcvae": method_row("beta_tcvae", 0.25, 0.05, 3.7),
        "factor_vae": method_row("factor_vae", 0.26, 0.09, 3.5),
    }
    for method, values in changes.items():
        if values is None:
            del rows[method]
        else:
            rows[method].update(values)
    return list(rows.values())


def verdicts(table):
    return [claim.holds for claim in check_claims(table)]


def test_claims_all_hold_on_the_papers_numbers():
    assert verdicts(paper_like_table()) == [True, True, True]


def test_claims_fail_where_the_numbers_say_so():
    # TCWAE-GAN MIG 0.10 +- 0.04: 0.08 above WAE is not > 3 x 0.04; below beta-TCVAE - 0.05.
    assert verdicts(paper_like_table(tcwae_gan={"mig": 0.10, "mig_std": 0.04})) == [
        False,
        True,
        False,
    ]
    # WAE reconstructs worse than FactorVAE.
    assert verdicts(paper_like_table(wae_mmd={"rec": 3.6})) == [True, False, True]
    # Within one standard deviation counts: 0.20 >= 0.26 - 0.09 (FactorVAE's larger std).
    table = paper_like_table(tcwae_mws={"mig": 0.20, "mig_std": 0.01})
    table = [row for row in table if row["method"] != "beta_tcvae"] + [
        method_row("beta_tcvae", 0.20, 0.01, 3.7)
    ]
    assert verdicts(table)[2] is True


def test_claims_cannot_be_decided_without_a_method_or_a_std():
    assert verdicts(paper_like_table(tcwae_gan=None)) == [None, True, None]
    single_seed = paper_like_table(wae_mmd={"mig_std": math.nan, "n": 1})
    claims = check_claims(single_seed)
    assert claims[0].holds is None
    assert "fewer than 2 seeds" in claims[0].detail


def test_write_results_md_puts_the_paper_beside_ours_and_states_the_claims(tmp_path):
    figure = tmp_path / "made" / "scores_vs_rec.png"
    figure.parent.mkdir()
    figure.write_bytes(b"\x89PNG")
    path = tmp_path / "out" / "RESULTS.md"
    path.parent.mkdir()
    path.write_text("# Results\n\n## Optimizer ablation\n\nwritten by another command\n")
    table = paper_like_table(tcwae_gan={"mig": 0.10, "mig_std": 0.04})
    claims = write_results_md(
        table,
        PAPER_TABLE_1A,
        "3000 steps at batch 64",
        "2 CPU cores",
        {"Fig. 3": figure},
        path,
        sweep="t1a",
    )
    text = path.read_text()
    assert text.startswith("# Results\n\n## Optimizer ablation\n\nwritten by another command\n")
    assert text.count(table_1a_heading("t1a")) == 1
    assert [claim.holds for claim in claims] == [False, True, False]
    assert "3000 steps at batch 64" in text and "2 CPU cores" in text
    assert (
        "| TCWAE-MWS (beta=50, gamma=100) | 3 | 4.10 ± 0.10 | 4.16 ± 0.31 | 0.36 ± 0.04 | "
        "0.36 ± 0.04 |"
    ) in text
    assert (
        "| WAE-MMD (lam=200) | 3 | 3.00 ± 0.10 | 3.01 ± 0.03 | 0.020 ± 0.005 | 0.026 ± 0.006 |"
        in text
    )
    assert "**does not hold**: TCWAE-MWS and TCWAE-GAN MIG exceed WAE MIG" in text
    assert "**holds**: WAE has the lowest reconstruction error" in text
    assert "InfoM" in text and "DCI D" in text
    assert "![Fig. 3](RESULTS_figures/t1a_scores_vs_rec.png)" in text
    assert (
        tmp_path / "out" / "RESULTS_figures" / "t1a_scores_vs_rec.png"
    ).read_bytes() == b"\x89PNG"


def test_write_results_md_replaces_its_own_sweep_section_and_keeps_the_others(tmp_path):
    path = tmp_path / "RESULTS.md"
    figure = tmp_path / "mig_vs_steps.png"
    figure.write_bytes(b"\x89PNG")
    for sweep, budget in (("a", "first"), ("b c", "other sweep"), ("a", "second")):
        write_results_md(
            paper_like_table(), PAPER_TABLE_1A, budget, "m", {"MIG": figure}, path, sweep=sweep
        )
    text = path.read_text()
    assert text.index(table_1a_heading("a")) < text.index(table_1a_heading("b c"))
    assert text.count(table_1a_heading("a")) == 1 and text.count(table_1a_heading("b c")) == 1
    assert "![MIG](RESULTS_figures/b-c_mig_vs_steps.png)" in text
    assert (tmp_path / "RESULTS_figures" / "a_mig_vs_steps.png").exists()
    assert "**Budget:** second" in text and "**Budget:** other sweep" in text
    assert "**Budget:** first" not in text
    assert text.count("### The paper's claims, checked on these numbers") == 2


def test_write_results_md_marks_methods_that_did_not_run(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_results_md(paper_like_table(factor_vae=None), PAPER_TABLE_1A, "b", "m", {}, path)
    text = path.read_text()
    assert "| FactorVAE | 0 | not run | 3.47 ± 0.13 |" in text
    assert "Figures" not in text


def mig_curves(wae_by_step):
    """Five methods' MIG over three seeds at steps 1-3; WAE's mean at each step is given, the
    others sit at fixed values (TCWAEs 0.30, beta-TCVAE 0.25, FactorVAE 0.26), spread 0.01."""
    levels = {"tcwae_mws": 0.30, "tcwae_gan": 0.30, "beta_tcvae": 0.25, "factor_vae": 0.26}
    curves = {
        method: {step: [level - SPREAD, level, level + SPREAD] for step in (1, 2, 3)}
        for method, level in levels.items()
    }
    curves["wae_mmd"] = {
        step: [mean - SPREAD, mean, mean + SPREAD] for step, mean in wae_by_step.items()
    }
    return curves


def test_budget_steps_check_the_mig_claims_at_every_step():
    budget = budget_steps(mig_curves({1: 0.29, 2: 0.02, 3: 0.02}))
    assert [entry.step for entry in budget] == [1, 2, 3]
    assert [entry.above_wae.holds for entry in budget] == [False, True, True]
    assert all(entry.on_par.holds for entry in budget)
    assert budget[1].mig["wae_mmd"] == pytest.approx((0.02, SPREAD))
    assert holds_from(budget, "above_wae") == 2
    assert holds_from(budget, "on_par") == 1


def test_a_claim_holds_from_the_step_after_its_last_failure():
    budget = budget_steps(mig_curves({1: 0.02, 2: 0.29, 3: 0.02}))
    assert holds_from(budget, "above_wae") == 3
    assert holds_from(budget_steps(mig_curves({1: 0.02, 2: 0.02, 3: 0.29})), "above_wae") is None


def test_curves_keep_the_steps_every_run_of_a_method_logged():
    runs = [
        {"run_id": "a", "method": "wae_mmd"},
        {"run_id": "b", "method": "wae_mmd"},
        {"run_id": "c", "method": "tcwae_mws"},
    ]
    histories = {"a": {10: 0.1, 20: 0.2}, "b": {10: 0.3}, "c": {10: 0.5, 20: 0.6}}
    assert curves_by_method(runs, histories) == {
        "wae_mmd": {10: [0.1, 0.3]},
        "tcwae_mws": {10: [0.5], 20: [0.6]},
    }


def test_replace_section_keeps_the_rest_and_is_idempotent():
    page = "# Results\n\n## A\n\nold a\n\n## B\n\nb stays\n"
    replaced = replace_section(page, "## A", "new a")
    assert replaced == "# Results\n\n## A\n\nnew a\n\n## B\n\nb stays\n"
    assert replace_section(replaced, "## A", "new a") == replaced
    appended = replace_section("# Results\ntext\n\n\n", "## C", "c")
    assert appended == "# Results\ntext\n\n## C\n\nc\n"
