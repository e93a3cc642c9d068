"""The HDF5 cache (round trip, atomic writes, damaged files) and `load_dataset` dispatch."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tcwae.data import DATASETS, DatasetError, FactorDataset, data_root, load_dataset
from tcwae.data import cache as module
from tcwae.data.cache import cache_path, load_cached, read_cache, write_cache
from tcwae.data.dataset import factor_grid


def noise_dataset(channels: int = 3, with_factors: bool = True) -> FactorDataset:
    sizes = (2, 3, 2) if with_factors else ()
    classes = np.concatenate([factor_grid(sizes)] * 2) if with_factors else np.zeros((7, 0), int)
    count = len(classes)
    images = torch.randint(0, 256, (count, channels, 64, 64), dtype=torch.uint8)
    names = ("a", "b", "c") if with_factors else ()
    return FactorDataset("toy", images, classes, sizes, names, "official")


def binary_dataset() -> FactorDataset:
    images = (torch.rand(12, 1, 64, 64) > 0.7).to(torch.uint8) * 255
    return FactorDataset("toy", images, factor_grid((3, 4)), (3, 4), ("a", "b"), "procedural")


def assert_same(loaded: FactorDataset, original: FactorDataset) -> None:
    assert loaded.images.equal(original.images) and loaded.images.dtype == torch.uint8
    np.testing.assert_array_equal(loaded.factor_classes, original.factor_classes)
    assert loaded.factor_classes.dtype == np.int64
    assert (loaded.name, loaded.source) == (original.name, original.source)
    assert loaded.factor_sizes == original.factor_sizes
    assert loaded.factor_names == original.factor_names


@pytest.mark.parametrize(
    ("dataset", "binary"),
    [
        (noise_dataset(), False),
        (noise_dataset(1), False),
        (noise_dataset(with_factors=False), False),
        (binary_dataset(), True),
    ],
    ids=["rgb", "grey", "no-factors", "binary-packed"],
)
def test_cache_round_trip(tmp_path: Path, dataset: FactorDataset, binary: bool) -> None:
    path = tmp_path / "cache" / "toy-official.h5"
    write_cache(dataset, path, binary=binary, origin="tests")
    loaded = read_cache(path)
    assert_same(loaded, dataset)
    if dataset.factor_sizes:
        factors = dataset.sample_factors(9, np.random.default_rng(0))
        np.testing.assert_array_equal(loaded.index_of(factors), dataset.index_of(factors))
    assert list(path.parent.iterdir()) == [path], "no temporary file is left behind"


def test_gzip_cache_round_trip_and_unknown_compression(tmp_path: Path) -> None:
    dataset = noise_dataset()
    path = tmp_path / "cache" / "toy-official.h5"
    write_cache(dataset, path, compression="gzip")
    with h5py.File(path, "r") as cache:
        assert cache["images"].compression == "gzip"
    assert_same(read_cache(path), dataset)
    with pytest.raises(ValueError, match="compression must be one of"):
        write_cache(dataset, tmp_path / "other.h5", compression="zstd")
    assert not (tmp_path / "other.h5").exists()


def test_binary_packing_is_eight_times_smaller(tmp_path: Path) -> None:
    images = (torch.rand(512, 1, 64, 64) > 0.5).to(torch.uint8) * 255
    dataset = FactorDataset("toy", images, np.zeros((512, 0), np.int64), (), (), "procedural")
    write_cache(dataset, tmp_path / "packed.h5", binary=True)
    with h5py.File(tmp_path / "packed.h5") as cache:
        assert cache["images_packed"].shape == (512, 512)
    with pytest.raises(ValueError, match="non 0/255"):
        write_cache(noise_dataset(1), tmp_path / "bad.h5", binary=True)


def test_load_cached_builds_once(tmp_path: Path) -> None:
    builds = []
    dataset = noise_dataset()

    def build() -> FactorDataset:
        builds.append(1)
        return dataset

    first = load_cached(tmp_path, "toy", "official", build)
    second = load_cached(tmp_path, "toy", "official", build)
    assert builds == [1]
    assert_same(second, first)
    assert cache_path(tmp_path, "toy", "official") == tmp_path / "cache" / "toy-official.h5"


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module.np, "packbits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_cached(tmp_path, "toy", "procedural", binary_dataset, binary=True)
    # no file, no temporary; the cache folder made for it is removed as well
    assert list((tmp_path / "cache").glob("*")) == []


def damaged_cache(tmp_path: Path, damage: str) -> Path:
    path = tmp_path / "cache" / "toy-official.h5"
    write_cache(noise_dataset(), path)
    if damage == "truncated":
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not hdf5" * 100)
    else:
        with h5py.File(path, "r+") as cache:
            if damage == "no marker":
                del cache.attrs["complete"]
            elif damage == "old version":
                cache.attrs["format_version"] = 0
            elif damage == "missing images":
                del cache["images"]
            elif damage == "wrong shape":
                cache.attrs["image_shape"] = [5, 3, 64, 64]
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "unreadable or corrupt"),
        ("garbage", "unreadable or corrupt"),
        ("no marker", "incomplete"),
        ("old version", "format version 0"),
        ("missing images", "unreadable or corrupt"),
        ("wrong shape", "unreadable or corrupt"),
    ],
)
def test_damaged_cache_is_named_with_the_fix(tmp_path: Path, damage: str, message: str) -> None:
    path = damaged_cache(tmp_path, damage)
    with pytest.raises(DatasetError, match=message) as raised:
        load_cached(tmp_path, "toy", "official", pytest.fail)
    assert str(path) in str(raised.value) and "delete" in str(raised.value)


def test_unknown_names_and_sources_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown data set 'mnist'") as raised:
        load_dataset("mnist", root=tmp_path)
    assert all(name in str(raised.value) for name in DATASETS)
    with pytest.raises(DatasetError, match="unknown source 'web'.*auto, official, procedural"):
        load_dataset("dsprites", root=tmp_path, source="web")
    with pytest.raises(DatasetError, match="celeba has no procedural renderer"):
        load_dataset("celeba", root=tmp_path, source="procedural")


def test_data_root_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path / "data"))
    assert data_root() == tmp_path / "data"
    monkeypatch.delenv("TCWAE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root() == tmp_path / ".cache" / "tcwae"


def test_root_argument_overrides_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path / "elsewhere"))
    faces = noise_dataset(with_factors=False)
    faces.name = "celeba"
    write_cache(faces, cache_path(tmp_path, "celeba", "official"))
    assert load_dataset("celeba", root=tmp_path).images.equal(faces.images)


def test_cache_of_another_data_set_is_refused(tmp_path: Path) -> None:
    path = cache_path(tmp_path, "celeba", "official")
    write_cache(noise_dataset(), path)
    with pytest.raises(DatasetError, match="holds toy .official., not celeba") as raised:
        load_dataset("celeba", root=tmp_path)
    assert str(path) in str(raised.value)
