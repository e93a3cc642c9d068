import matplotlib.image as mpimg
import numpy as np
import pytest

from tcwae import sweep_figures
from tcwae.png import DPI


def grid_rows() -> list[dict]:
    return [
        {"beta": 1, "gamma": 5, "mig": 0.1, "rec": 3.0},
        {"beta": 1, "gamma": 5, "mig": 0.3, "rec": 5.0},
        {"beta": 1, "gamma": 10, "mig": 0.2, "rec": None},
        {"beta": 10, "gamma": 5, "mig": float("nan"), "rec": 4.0},
        {"beta": 10, "gamma": 5, "mig": 0.5, "rec": 6.0},
        {"beta": 10.0, "gamma": 10.0, "rec": 2.0},
    ]


def test_grid_means_average_duplicates_and_leave_missing_cells_nan():
    xs, ys, mig = sweep_figures.grid_means(grid_rows(), "gamma", "beta", "mig")
    assert xs == [5.0, 10.0] and ys == [1.0, 10.0]
    np.testing.assert_allclose(mig, [[0.2, 0.2], [0.5, np.nan]])
    _, _, rec = sweep_figures.grid_means(grid_rows(), "gamma", "beta", "rec")
    np.testing.assert_allclose(rec, [[4.0, np.nan], [5.0, 2.0]])
    with pytest.raises(ValueError, match="lacks"):
        sweep_figures.grid_means([{"beta": 1, "mig": 0.1}], "gamma", "beta", "mig")


def test_heatmaps_png_has_one_panel_per_score(tmp_path):
    for keys in (["mig"], ["mig", "rec", "sap"]):
        path = tmp_path / f"heatmap{len(keys)}.png"
        sweep_figures.save_heatmaps(grid_rows(), "gamma", "beta", keys, path, "TCWAE-MWS")
        png = mpimg.imread(path)
        width, height = sweep_figures.PANEL_INCHES[0] * len(keys), sweep_figures.PANEL_INCHES[1]
        assert png.shape[:2] == (round(height * DPI), round(width * DPI))
        assert png[..., :3].std() > 0.05, "the panels are drawn"


def test_scores_vs_rec_draws_rows_with_beta_only(tmp_path):
    rows = [
        {"method": m, "beta": b, "seed": s, "rec": 3 + b / 10 + s, "mig": b / 20, "sap": 0.01}
        for m in ("tcwae_mws", "beta_tcvae")
        for b in (1, 5, 10)
        for s in (0, 1)
    ]
    rows.append({"method": "wae_mmd", "lam": 10, "rec": 2.0, "mig": 0.02, "sap": 0.0})
    path = tmp_path / "scores.png"
    sweep_figures.save_scores_vs_rec(rows, path, score_keys=("mig", "sap"))
    png = mpimg.imread(path)
    assert png.shape[:2] == (
        round(sweep_figures.PANEL_INCHES[1] * DPI),
        round(2 * sweep_figures.PANEL_INCHES[0] * DPI),
    )
    with pytest.raises(ValueError, match="beta"):
        sweep_figures.save_scores_vs_rec(rows[-1:], tmp_path / "none.png")


def test_method_scores_vs_rec_draws_every_method_with_or_without_beta(tmp_path):
    rows = [
        {"method": m, "seed": s, "rec": 3.0 + s, "mig": 0.1 * s, "sap": 0.01}
        for m in ("wae_mmd", "tcwae_mws")
        for s in (0, 1, 2)
    ]
    rows.append({"method": "factor_vae", "rec": 4.0, "mig": float("nan"), "sap": 0.02})
    path = tmp_path / "methods.png"
    sweep_figures.save_method_scores_vs_rec(rows, path, score_keys=("mig", "sap"))
    assert mpimg.imread(path).shape[:2] == (
        round(sweep_figures.PANEL_INCHES[1] * DPI),
        round(2 * sweep_figures.PANEL_INCHES[0] * DPI),
    )
    with pytest.raises(ValueError, match="no rows"):
        sweep_figures.save_method_scores_vs_rec([], tmp_path / "none.png")


def test_curves_draw_mean_and_band_per_group(tmp_path):
    curves = {"WAE": {250: [0.01, 0.02], 500: [0.02, 0.03]}, "TCWAE": {250: [0.1], 500: [0.2]}}
    path = tmp_path / "curves.png"
    sweep_figures.save_curves(curves, path, "MIG", "MIG against steps")
    assert mpimg.imread(path).shape[:2] == (
        round(sweep_figures.PANEL_INCHES[1] * DPI),
        round(sweep_figures.PANEL_INCHES[0] * DPI),
    )
    with pytest.raises(ValueError, match="no curves"):
        sweep_figures.save_curves({}, tmp_path / "none.png", "MIG", "empty")
