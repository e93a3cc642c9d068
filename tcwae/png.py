"""Writing a matplotlib figure as a PNG: everything draws on a `matplotlib.figure.Figure`, which
renders with Agg without touching pyplot's global backend, and each file is written under a
temporary name and renamed, so a reader never sees half a PNG."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from tcwae.atomic import atomic_path

DPI = 100


def save_figure(figure: Figure, path: str | Path) -> None:
    """Render to a temporary file beside `path`, then rename it into place."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
