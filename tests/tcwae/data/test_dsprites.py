"""dSprites: the procedural grid's properties, the official npz layout, download and fallback."""

import functools
import http.server
import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tcwae.data import DatasetError, load_dataset, procedural_dsprites, small_dsprites
from tcwae.data import dsprites as module
from tcwae.data.cache import cache_path

GRID = dict(num_shapes=3, num_scales=6, num_orientations=10, num_positions=8)
SHAPE_INDEX = {name: index for index, name in enumerate(module.SHAPES)}


@pytest.fixture(scope="module")
def small():
    return procedural_dsprites(**GRID)


@pytest.fixture(scope="module")
def extremes():
    """Every shape, scale and orientation of the full grid at the corner positions only."""
    return procedural_dsprites(num_positions=2)


def grid_images(dataset) -> np.ndarray:
    """Images as [shape, scale, orientation, posX, posY, 64, 64] 0/1 (valid for grid order)."""
    return (dataset.images[:, 0].numpy() > 0).reshape(*dataset.factor_sizes, 64, 64)


def count_distinct(flat_images: np.ndarray) -> int:
    """Number of distinct rows of a binary [n, pixels] array, compared as packed byte strings."""
    packed = np.packbits(flat_images, axis=1)
    return len(np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).ravel()))


def centre_of_mass(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mass = images.sum(axis=(-1, -2))
    rows = (images.sum(axis=-1) * np.arange(64)).sum(axis=-1) / mass
    cols = (images.sum(axis=-2) * np.arange(64)).sum(axis=-1) / mass
    return rows, cols


def test_reduced_grid_has_the_requested_factor_sizes_in_mixed_radix_order(small) -> None:
    assert small.factor_sizes == (3, 6, 10, 8, 8)
    assert small.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert small.images.shape == (11_520, 1, 64, 64) and small.images.dtype == torch.uint8
    assert small.source == "procedural"
    factors = small.sample_factors(100, np.random.default_rng(0))
    expected = factors @ np.array([3840, 640, 64, 8, 1])
    np.testing.assert_array_equal(small.index_of(factors), expected)
    np.testing.assert_array_equal(small.factor_classes[expected], factors)
    assert small_dsprites((3, 6, 10, 8, 8)).images.equal(small.images)


def test_images_are_binary_white_on_black(small) -> None:
    pixels = small.images.numpy()
    assert ((pixels == 0) | (pixels == 255)).all() and pixels.max() == 255
    foreground = (small.images > 0).float().mean().item()
    assert 0.01 < foreground < 0.2


def test_objects_stay_inside_with_background_on_every_border(extremes) -> None:
    images = grid_images(extremes)
    assert not images[..., 0, :].any() and not images[..., 63, :].any()
    assert not images[..., :, 0].any() and not images[..., :, 63].any()
    assert images.any(axis=(-1, -2)).all(), "every image shows an object"
    # At the far corner, the object reaches close to the border but not onto it.
    far = images[:, -1, :, -1, -1]
    assert far[..., 58:63, :].any() and far[..., :, 58:63].any()


def test_different_shape_scale_and_position_give_different_images(small) -> None:
    images = grid_images(small)
    for orientation in range(small.factor_sizes[2]):
        flat = images[:, :, orientation].reshape(-1, 64 * 64)
        assert count_distinct(flat) == len(flat)


def test_larger_scale_means_more_foreground(extremes, small) -> None:
    for dataset in (extremes, small):
        counts = grid_images(dataset).sum(axis=(-1, -2))
        assert (np.diff(counts, axis=1) > 0).all()


def test_larger_positions_move_the_centre_of_mass_right_and_down(small) -> None:
    rows, cols = centre_of_mass(grid_images(small))
    assert (np.diff(cols, axis=3) > 0).all() and (np.diff(rows, axis=4) > 0).all()
    np.testing.assert_allclose(np.diff(cols, axis=4), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.diff(rows, axis=3), 0.0, atol=1e-9)


def test_positions_span_the_official_range() -> None:
    corners = grid_images(procedural_dsprites(num_shapes=1, num_scales=1, num_orientations=1))
    rows, cols = centre_of_mass(corners[0, 0, 0])
    np.testing.assert_allclose(cols[:, 0], 16 + np.arange(32))
    np.testing.assert_allclose(rows[0, :], 16 + np.arange(32))


@pytest.mark.parametrize("shape", ["ellipse", "heart"])
def test_ellipse_and_heart_visibly_rotate(small, shape) -> None:
    images = grid_images(small)[SHAPE_INDEX[shape], :, :, 3, 3]  # [scale, orientation, 64, 64]
    upright, turned = images[:, 0], images[:, 2]  # 0 and 80 degrees
    changed = (upright != turned).sum(axis=(-1, -2))
    assert (changed > 0.3 * upright.sum(axis=(-1, -2))).all()
    # orientation runs over linspace(0, 2 pi): the last one is the first one again
    np.testing.assert_array_equal(images[:, 0], images[:, -1])


def test_shapes_look_like_square_ellipse_and_heart(extremes) -> None:
    upright = grid_images(extremes)[:, -1, 0, 0, 0]  # scale 1, orientation 0, top-left
    square, ellipse, heart = (upright[index] for index in range(3))
    rows, cols = np.nonzero(square)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert box == square.sum() and rows.max() - rows.min() == cols.max() - cols.min()
    ellipse_rows, ellipse_cols = np.nonzero(ellipse)
    width = ellipse_cols.max() - ellipse_cols.min() + 1
    height = ellipse_rows.max() - ellipse_rows.min() + 1
    assert 1.8 < width / height < 2.2 and ellipse.sum() < 0.8 * width * height
    window = heart[:, 1:32]
    np.testing.assert_array_equal(window, window[:, ::-1])  # mirror symmetric at orientation 0
    column_tops = np.argmax(window, axis=0).astype(float)
    column_tops[~window.any(axis=0)] = np.inf
    lobe_top, centre_top = column_tops.min(), column_tops[15]
    assert centre_top >= lobe_top + 2, "the heart has a notch between two lobes at the top"
    bottoms = np.nonzero(window.any(axis=1))[0].max()
    assert window[bottoms].sum() <= 3, "and a point at the bottom"


def test_renderer_writes_the_official_npz_layout(tmp_path: Path) -> None:
    grid = dict(GRID, num_positions=4)
    arrays = module.render_dsprites_arrays(**grid)
    path = tmp_path / "grid.npz"
    module.write_dsprites_npz(path, arrays)
    with np.load(path, allow_pickle=True) as npz:
        assert sorted(npz.files) == sorted(module.NPZ_KEYS)
        assert npz["imgs"].dtype == np.uint8 and npz["imgs"].shape == (2880, 64, 64)
        assert set(np.unique(npz["imgs"]).tolist()) == {0, 1}
        assert npz["latents_classes"].shape == (2880, 6)
        assert npz["latents_values"].dtype == np.float64
        metadata = npz["metadata"][()]
        np.testing.assert_array_equal(metadata["latents_sizes"], [1, 3, 6, 10, 4, 4])
        values = npz["latents_values"]
        np.testing.assert_allclose(np.unique(values[:, 1]), [1, 2, 3])
        np.testing.assert_allclose(np.unique(values[:, 2]), np.linspace(0.5, 1.0, 6))
        np.testing.assert_allclose(np.unique(values[:, 3]), np.linspace(0.0, 2 * np.pi, 10))
        np.testing.assert_allclose(np.unique(values[:, 4]), np.linspace(0.0, 1.0, 4))
    read = module.read_dsprites_npz(path, "procedural")
    assert read.images.equal(procedural_dsprites(**grid).images)
    assert read.factor_sizes == (3, 6, 10, 4, 4)


def test_full_grid_renders_with_the_official_index_and_properties() -> None:
    started = time.perf_counter()
    dataset = procedural_dsprites()
    render_seconds = time.perf_counter() - started
    assert dataset.factor_sizes == (3, 6, 40, 32, 32) and len(dataset) == 737_280
    assert render_seconds < 60
    factors = dataset.sample_factors(1000, np.random.default_rng(3))
    shape, scale, orientation, x, y = factors.T
    expected = shape * 245760 + scale * 40960 + orientation * 1024 + x * 32 + y
    np.testing.assert_array_equal(dataset.index_of(factors), expected)
    np.testing.assert_array_equal(dataset.factor_classes[expected], factors)
    images = dataset.images[:, 0].numpy()
    for border in (images[:, 0], images[:, 63], images[:, :, 0], images[:, :, 63]):
        assert not border.any()
    counts = images.reshape(len(images), -1).sum(axis=1, dtype=np.uint32)
    assert (np.diff(counts.reshape(dataset.factor_sizes).astype(np.int64), axis=1) > 0).all()
    grid = images.reshape(3, 6, 40, 32 * 32, 64 * 64)
    for orientation in (0, 7, 13, 26):
        assert count_distinct(grid[:, :, orientation].reshape(-1, 64 * 64)) == 18_432


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the download at a closed local port: refused at once, deterministically."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{module.FILE_NAME}"
    monkeypatch.setattr(module, "URL", url)
    return url


@pytest.fixture
def cheap_renderer(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the fallback render a reduced grid, and count the renders."""
    calls: list[int] = []
    original = module.render_dsprites

    def render():
        calls.append(1)
        return original(num_shapes=2, num_scales=2, num_orientations=3, num_positions=4)

    monkeypatch.setattr(module, "render_dsprites", render)
    return calls


def place_official_file(root: Path, arrays=None) -> Path:
    path = root / "dsprites" / module.FILE_NAME
    module.write_dsprites_npz(path, arrays or module.render_dsprites_arrays(2, 2, 3, 4))
    return path


def test_official_source_reads_the_npz_and_then_only_the_cache(data_root: Path) -> None:
    path = place_official_file(data_root)
    dataset = load_dataset("dsprites", source="official")
    assert dataset.source == "official" and dataset.factor_sizes == (2, 2, 3, 4, 4)
    assert cache_path(data_root, "dsprites", "official").exists()
    path.unlink()
    again = load_dataset("dsprites", source="auto")
    assert again.source == "official" and again.images.equal(dataset.images)


def test_official_download_fails_fast_offline_and_never_falls_back(data_root, offline) -> None:
    started = time.perf_counter()
    with pytest.raises(DatasetError) as raised:
        load_dataset("dsprites", source="official")
    assert time.perf_counter() - started < 5
    message = str(raised.value)
    assert module.FILE_NAME in message and "download" in message and offline in message
    assert not (data_root / "cache").exists()


def test_auto_falls_back_to_procedural_loudly(data_root, offline, cheap_renderer, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        with pytest.warns(RuntimeWarning, match="FALLING BACK TO THE PROCEDURAL"):
            dataset = load_dataset("dsprites")
    assert "FALLING BACK" in caplog.text
    assert dataset.source == "procedural" and cheap_renderer == [1]
    with pytest.warns(RuntimeWarning, match="FALLING BACK"):
        again = load_dataset("dsprites")
    assert cheap_renderer == [1], "the second load reads the procedural cache"
    assert again.images.equal(dataset.images)


def test_download_from_a_server_gives_the_official_source(data_root, monkeypatch) -> None:
    served = data_root / "server"
    place_official_file(served)
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(served / "dsprites")
    )
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{module.FILE_NAME}"
        monkeypatch.setattr(module, "URL", url)
        dataset = load_dataset("dsprites", root=data_root / "client")
    finally:
        server.shutdown()
        server.server_close()
    assert dataset.source == "official" and dataset.factor_sizes == (2, 2, 3, 4, 4)
    assert (data_root / "client" / "dsprites" / module.FILE_NAME).exists()


def test_procedural_source_never_downloads(data_root, monkeypatch, cheap_renderer) -> None:
    monkeypatch.setattr(module, "download_dsprites", pytest.fail)
    assert load_dataset("dsprites", source="procedural").source == "procedural"


def broken_arrays(defect: str) -> dict:
    arrays = module.render_dsprites_arrays(2, 2, 3, 4)
    if defect == "missing key":
        del arrays["latents_values"]
    elif defect == "wrong image shape":
        arrays["imgs"] = arrays["imgs"][:, :32, :32].copy()
    elif defect == "shuffled order":
        arrays["latents_classes"] = arrays["latents_classes"][::-1].copy()
    elif defect == "not binary":
        arrays["imgs"] = arrays["imgs"] * 255
    return arrays


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("missing key", r"lacks the keys \['latents_values'\]"),
        ("wrong image shape", r"imgs must be uint8 \[N, 64, 64\]"),
        ("shuffled order", "not the mixed-radix grid"),
        ("not binary", "0/1 pixels"),
    ],
)
def test_bad_official_files_name_the_file_and_the_fix(data_root, defect, message) -> None:
    path = data_root / "dsprites" / module.FILE_NAME
    path.parent.mkdir(parents=True)
    arrays = broken_arrays(defect)
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message) as raised:
        load_dataset("dsprites", source="official")
    assert str(path) in str(raised.value) and "download it again" in str(raised.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_official_files_are_reported(data_root, damage) -> None:
    path = place_official_file(data_root)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"not a zip" * 9)
    with pytest.raises(DatasetError, match="unreadable or corrupt") as raised:
        load_dataset("dsprites", source="official")
    assert str(path) in str(raised.value) and module.URL in str(raised.value)


def test_reduced_grid_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="1..3 shapes and 1..32 positions"):
        procedural_dsprites(num_positions=33)
    with pytest.raises(ValueError, match="posX and posY need the same size"):
        small_dsprites((3, 6, 10, 8, 4))
