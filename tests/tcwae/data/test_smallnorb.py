"""smallNORB: tiny files in the official binary matrix format, plain and gzipped."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from tcwae.data import DatasetError, load_dataset
from tcwae.data import smallnorb as module

BYTE_MAGIC, INT_MAGIC = 0x1E3D4C55, 0x1E3D4C54


def matrix_bytes(array: np.ndarray) -> bytes:
    """The official layout: magic, ndim, max(3, ndim) dims (padded with 1), little-endian data."""
    magic = BYTE_MAGIC if array.dtype == np.uint8 else INT_MAGIC
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder("<")).tobytes()


def write_matrix(path: Path, array: np.ndarray, gzipped: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = matrix_bytes(array)
    if gzipped:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    return path


def split_arrays(factors: list[tuple[int, int, int, int, int]], seed: int):
    """dat / cat / info for rows of (category, instance, elevation, azimuth class, lighting).

    The left camera shows a constant grey level derived from the row, the right camera noise.
    """
    count = len(factors)
    rng = np.random.default_rng(seed)
    dat = rng.integers(0, 256, size=(count, 2, 96, 96), dtype=np.uint8)
    for row in range(count):
        dat[row, 0] = 10 * (seed * 10 + row + 1)
    rows = np.array(factors, dtype=np.int32)
    cat = rows[:, 0]
    info = np.stack([rows[:, 1], rows[:, 2], rows[:, 3] * 2, rows[:, 4]], axis=1)
    return {"dat": dat, "cat": cat, "info": info.astype(np.int32)}


TRAINING = [(0, 4, 0, 0, 0), (1, 6, 8, 17, 5), (4, 9, 3, 7, 2)]
TESTING = [(0, 0, 0, 0, 0), (2, 1, 5, 9, 1)]


def write_smallnorb(root: Path, gzipped: bool = True, override=None) -> dict[str, Path]:
    paths = {}
    for split, rows, seed in (("training", TRAINING, 1), ("testing", TESTING, 2)):
        arrays = split_arrays(rows, seed)
        for kind, array in arrays.items():
            if override and (split, kind) == override[0]:
                array = override[1](array)
            target = root / "smallnorb" / module.file_name(split, kind)
            paths[f"{split}-{kind}"] = write_matrix(target, array, gzipped)
    return paths


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("gzipped", [True, False])
def test_tiny_official_files_load_with_observed_factors(data_root: Path, gzipped: bool) -> None:
    write_smallnorb(data_root, gzipped)
    dataset = load_dataset("smallnorb")
    assert dataset.factor_names == ("category", "elevation", "azimuth", "lighting")
    assert dataset.factor_sizes == (5, 9, 18, 6) and dataset.source == "official"
    assert dataset.images.shape == (5, 1, 64, 64)
    expected = np.array([[c, e, a, light] for c, _, e, a, light in TRAINING + TESTING])
    np.testing.assert_array_equal(dataset.factor_classes, expected)
    # left camera, resized: the constant grey level survives the antialiased resize exactly
    levels = dataset.images.view(5, -1)
    assert (levels == levels[:, :1]).all()
    np.testing.assert_array_equal(levels[:, 0].numpy(), [110, 120, 130, 210, 220])


def test_unobserved_instance_resolves_to_the_first_stored_image(data_root: Path) -> None:
    write_smallnorb(data_root)
    dataset = load_dataset("smallnorb")
    # (0, 0, 0, 0) occurs for training instance 4 (row 0) and testing instance 0 (row 3)
    np.testing.assert_array_equal(dataset.index_of(np.array([[0, 0, 0, 0], [2, 5, 9, 1]])), [0, 4])
    sampled = dataset.sample_factors(200, np.random.default_rng(0))
    assert {tuple(row) for row in sampled.tolist()} == {
        (0, 0, 0, 0),
        (1, 8, 17, 5),
        (4, 3, 7, 2),
        (2, 5, 9, 1),
    }


def test_resize_keeps_structure() -> None:
    image = np.zeros((1, 96, 96), dtype=np.uint8)
    image[0, :, 48:] = 240
    resized = module.resize_to_64(image)[0, 0].numpy()
    assert resized.shape == (64, 64)
    assert (resized[:, :31] == 0).all() and (resized[:, 33:] == 240).all()


def test_later_loads_read_only_the_cache(data_root: Path) -> None:
    paths = write_smallnorb(data_root)
    first = load_dataset("smallnorb")
    for path in paths.values():
        path.unlink()
    again = load_dataset("smallnorb")
    assert again.images.equal(first.images)
    np.testing.assert_array_equal(again.factor_classes, first.factor_classes)


def test_missing_files_name_the_file_and_where_to_get_it(data_root: Path) -> None:
    paths = write_smallnorb(data_root)
    paths["testing-info"].unlink()
    with pytest.raises(DatasetError) as raised:
        load_dataset("smallnorb")
    message = str(raised.value)
    assert module.file_name("testing", "info") in message and module.URL in message


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def corrupt_magic(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[:4] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(content))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncate, r"needs \d+ \(truncated\?\)"),
        (corrupt_magic, "not a smallNORB byte/int matrix"),
        (lambda path: path.write_bytes(b"abc"), "too short for a matrix header"),
    ],
)
def test_damaged_plain_files_are_reported(data_root: Path, damage, message) -> None:
    paths = write_smallnorb(data_root, gzipped=False)
    damage(paths["training-dat"])
    with pytest.raises(DatasetError, match=message) as raised:
        load_dataset("smallnorb")
    assert str(paths["training-dat"]) in str(raised.value)
    assert not (data_root / "cache" / "smallnorb-official.h5").exists()


def test_truncated_gzip_is_reported(data_root: Path) -> None:
    paths = write_smallnorb(data_root, gzipped=True)
    truncate(paths["testing-dat"])
    with pytest.raises(DatasetError, match="unreadable or corrupt") as raised:
        load_dataset("smallnorb")
    assert str(paths["testing-dat"]) in str(raised.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ((("training", "cat"), lambda cat: cat[:2]), r"must be \[3\] and \[3, 4\]"),
        ((("training", "dat"), lambda dat: dat[:, :1]), r"expected uint8 \[n, 2, 96, 96\]"),
        (
            (("testing", "info"), lambda info: (info + [0, 0, 1, 0]).astype(np.int32)),
            "azimuth 0, 2",
        ),
        ((("testing", "cat"), lambda cat: cat + 5), "category 0..4"),
    ],
)
def test_inconsistent_files_are_reported(data_root: Path, override, message) -> None:
    write_smallnorb(data_root, override=override)
    with pytest.raises(DatasetError, match=message):
        load_dataset("smallnorb")
