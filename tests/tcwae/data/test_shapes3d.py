"""Shapes3D: a tiny file in the `3dshapes.h5` layout; the procedural source is in
test_data_shapes3d_procedural.py."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from tcwae.data import DatasetError, load_dataset
from tcwae.data import shapes3d as module

# The official label values of each factor.
VALUES = (
    np.linspace(0.0, 0.9, 10),
    np.linspace(0.0, 0.9, 10),
    np.linspace(0.0, 0.9, 10),
    np.linspace(0.75, 1.25, 8),
    np.arange(4.0),
    np.linspace(-30.0, 30.0, 15),
)
ROWS = 30


def tiny_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images [30, 64, 64, 3], labels [30, 6] covering every value of every factor, classes."""
    rng = np.random.default_rng(seed)
    classes = np.stack(
        [rng.permutation(np.arange(ROWS) % len(values)) for values in VALUES], axis=1
    )
    labels = np.stack([values[classes[:, axis]] for axis, values in enumerate(VALUES)], axis=1)
    images = rng.integers(0, 256, size=(ROWS, 64, 64, 3), dtype=np.uint8)
    return images, labels, classes


def write_h5(path: Path, **datasets: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        for key, value in datasets.items():
            file.create_dataset(key, data=value)
    return path


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path))
    return tmp_path


def h5_path(root: Path) -> Path:
    return root / "shapes3d" / module.FILE_NAME


def test_tiny_file_loads_channels_first_with_ranked_classes(data_root: Path) -> None:
    images, labels, classes = tiny_arrays()
    write_h5(h5_path(data_root), images=images, labels=labels)
    dataset = load_dataset("shapes3d")
    assert dataset.factor_sizes == (10, 10, 10, 8, 4, 15)
    assert dataset.factor_names[0] == "floor_hue" and dataset.factor_names[-1] == "orientation"
    assert dataset.num_channels == 3 and dataset.source == "official"
    np.testing.assert_array_equal(dataset.images.permute(0, 2, 3, 1).numpy(), images)
    np.testing.assert_array_equal(dataset.factor_classes, classes)
    np.testing.assert_array_equal(dataset.index_of(classes[[4, 17]]), [4, 17])


def test_cache_makes_the_source_file_unnecessary(data_root: Path) -> None:
    images, labels, _ = tiny_arrays()
    path = write_h5(h5_path(data_root), images=images, labels=labels)
    first = load_dataset("shapes3d")
    path.unlink()
    assert load_dataset("shapes3d").images.equal(first.images)


def test_missing_file_says_where_to_get_it(data_root: Path) -> None:
    with pytest.raises(DatasetError, match="is missing; download") as raised:
        load_dataset("shapes3d", source="official")
    assert str(h5_path(data_root)) in str(raised.value) and module.URL in str(raised.value)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("no labels", r"lacks the datasets \['labels'\]"),
        ("wrong images", r"images must be uint8 \[N, 64, 64, 3\]"),
        ("wrong labels", r"labels must be \[30, 6\]"),
        ("missing values", "floor_hue has 5 distinct values, Shapes3D has 10"),
    ],
)
def test_bad_layouts_are_reported(data_root: Path, defect: str, message: str) -> None:
    images, labels, _ = tiny_arrays()
    datasets = {"images": images, "labels": labels}
    if defect == "no labels":
        del datasets["labels"]
    elif defect == "wrong images":
        datasets["images"] = images[..., :1]
    elif defect == "wrong labels":
        datasets["labels"] = labels[:, :5]
    elif defect == "missing values":
        datasets["labels"] = labels.copy()
        datasets["labels"][:, 0] = VALUES[0][np.arange(ROWS) % 5]
    path = write_h5(h5_path(data_root), **datasets)
    with pytest.raises(DatasetError, match=message) as raised:
        load_dataset("shapes3d")
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_is_reported(data_root: Path, damage: str) -> None:
    images, labels, _ = tiny_arrays()
    path = write_h5(h5_path(data_root), images=images, labels=labels)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"\x89HDF" * 50)
    with pytest.raises(DatasetError, match="unreadable or corrupt") as raised:
        load_dataset("shapes3d")
    assert str(path) in str(raised.value) and "download it again" in str(raised.value)
