"""A picture of procedural Shapes3D: every shape, then a sweep of each factor, one row a factor.

`python -m tcwae.data.shapes3d_picture docs/shapes3d_procedural.png` redraws the figure of
docs/data.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tcwae.atomic import atomic_path
from tcwae.data.shapes3d import FACTOR_NAMES, FACTOR_SIZES, SHAPES, render_images

# Orange floor, cyan wall, blue object, middle scale, a cube turned -17 degrees.
TYPICAL = (1, 5, 6, 4, 0, 3)
GAP = 2
LABEL_WIDTH = 118
BACKGROUND = 255


def sweeps() -> list[tuple[str, np.ndarray]]:
    """(label, factor classes `[n, 6]`) for each row: every shape, then each factor swept alone
    from TYPICAL (orientation every second value, for the cube and for the capsule)."""
    rows = []
    for axis, name in enumerate(FACTOR_NAMES):
        values = np.arange(FACTOR_SIZES[axis])
        label = name.replace("_", " ")
        if name == "orientation":
            values = values[::2]
            for shape in (SHAPES.index("cube"), SHAPES.index("capsule")):
                classes = np.tile(TYPICAL, (len(values), 1))
                classes[:, axis], classes[:, 4] = values, shape
                rows.append((f"orientation\n({SHAPES[shape]})", classes))
            continue
        classes = np.tile(TYPICAL, (len(values), 1))
        classes[:, axis] = values
        rows.append(
            (
                f"shape\n({', '.join(SHAPES[:2])},\n{', '.join(SHAPES[2:])})"
                if name == "shape"
                else label,
                classes,
            )
        )
    shape_row = next(index for index, (label, _) in enumerate(rows) if label.startswith("shape"))
    rows.insert(0, rows.pop(shape_row))
    return rows


def draw(path: Path) -> None:
    """Render every row and write them, labelled, as one PNG (atomically)."""
    from PIL import Image, ImageDraw

    rows = sweeps()
    columns = max(len(classes) for _, classes in rows)
    cell = 64 + GAP
    canvas = Image.new("RGB", (LABEL_WIDTH + columns * cell, len(rows) * cell), (BACKGROUND,) * 3)
    pen = ImageDraw.Draw(canvas)
    for row, (label, classes) in enumerate(rows):
        top = row * cell
        lines = label.splitlines()
        for line, words in enumerate(lines):
            pen.text((4, top + 32 + 12 * (line - len(lines) / 2)), words, fill=(0, 0, 0))
        for column, image in enumerate(render_images(classes)):
            picture = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
            canvas.paste(picture, (LABEL_WIDTH + column * cell, top))
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG", optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the PNG to write")
    draw(parser.parse_args(argv).output)


if __name__ == "__main__":
    main()
