"""3Dchairs and CelebA: folders of image files, no factors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tcwae.data import DatasetError, celeba, chairs, load_dataset

RED, BLUE, WHITE = (220, 20, 20), (20, 20, 220), (255, 255, 255)


def save_image(path: Path, size: tuple[int, int], colour, inner=None, quality: int = 95) -> Path:
    """A `size` (width, height) image of `colour`, optionally with a centred square `inner`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if inner is not None:
        side, inner_colour = inner
        left, top = (size[0] - side) // 2, (size[1] - side) // 2
        image.paste(inner_colour, (left, top, left + side, top + side))
    image.save(path, quality=quality) if path.suffix == ".jpg" else image.save(path)
    return path


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TCWAE_DATA", str(tmp_path))
    return tmp_path


def test_chairs_folder_loads_every_image_at_any_depth_in_sorted_order(data_root: Path) -> None:
    folder = data_root / "chairs" / "rendered_chairs"
    save_image(folder / "b_chair" / "renders" / "image_001.png", (600, 600), WHITE)
    save_image(folder / "a_chair" / "renders" / "image_001.png", (600, 600), RED)
    save_image(folder / "a_chair" / "renders" / "image_002.jpg", (120, 80), BLUE, (80, RED))
    (folder / "a_chair" / "notes.txt").write_text("not an image")
    dataset = load_dataset("chairs")
    assert dataset.images.shape == (3, 3, 64, 64) and dataset.num_channels == 3
    assert dataset.factor_sizes == () and dataset.factor_classes.shape == (3, 0)
    colours = dataset.images.float().mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(colours[0], RED, atol=1)
    np.testing.assert_allclose(colours[1], RED, atol=4)  # non-square: the centred square is kept
    np.testing.assert_allclose(colours[2], WHITE, atol=1)
    with pytest.raises(DatasetError, match="no ground-truth factors"):
        dataset.sample_factors(4, np.random.default_rng(0))


def test_celeba_keeps_the_centre_140_crop(data_root: Path) -> None:
    """A red square a little larger than the crop fills the whole image; a smaller one does not."""
    folder = data_root / "celeba" / "img_align_celeba"
    save_image(folder / "000002.jpg", (178, 218), BLUE, (150, RED))
    save_image(folder / "000001.jpg", (178, 218), BLUE, (150, RED))
    save_image(folder / "000003.jpg", (178, 218), BLUE, (120, RED))
    dataset = load_dataset("celeba")
    assert dataset.images.shape == (3, 3, 64, 64) and dataset.factor_sizes == ()
    assert dataset.source == "official"
    pixels = dataset.images.permute(0, 2, 3, 1).float().numpy()
    assert np.abs(pixels[:2] - np.array(RED)).max() < 30, "no blue border survives the crop"
    corners = pixels[2, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (np.abs(corners - np.array(BLUE)).max(axis=1) < 30).all()
    np.testing.assert_allclose(pixels[2, 32, 32], RED, atol=5)


def test_folders_are_cached(data_root: Path) -> None:
    path = save_image(data_root / "celeba" / "img_align_celeba" / "000001.jpg", (178, 218), RED)
    first = load_dataset("celeba")
    path.unlink()
    assert load_dataset("celeba").images.equal(first.images)


@pytest.mark.parametrize(("name", "url"), [("chairs", chairs.URL), ("celeba", celeba.URL)])
def test_empty_folders_say_where_to_get_the_images(data_root: Path, name: str, url: str) -> None:
    with pytest.raises(DatasetError, match="no .*images") as raised:
        load_dataset(name)
    assert url in str(raised.value)


def test_corrupt_image_is_named(data_root: Path) -> None:
    folder = data_root / "celeba" / "img_align_celeba"
    save_image(folder / "000001.jpg", (178, 218), RED)
    broken = save_image(folder / "000002.jpg", (178, 218), RED)
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(DatasetError, match="cannot be decoded") as raised:
        load_dataset("celeba")
    assert str(broken) in str(raised.value)
    assert not (data_root / "cache").exists()


def test_image_smaller_than_the_crop_is_named(data_root: Path) -> None:
    small = save_image(data_root / "celeba" / "img_align_celeba" / "000001.jpg", (100, 100), RED)
    with pytest.raises(DatasetError, match="smaller than the 140x140 centre crop") as raised:
        load_dataset("celeba")
    assert str(small) in str(raised.value)
