"""The data-set catalog: names, sources and factor names, known without loading anything and
without torch (the config and the search spaces read it to check and size a run)."""

from __future__ import annotations

from types import MappingProxyType

DATASETS = ("dsprites", "smallnorb", "shapes3d", "chairs", "celeba", "sprite_videos")
SEQUENCE_DATASETS = ("sprite_videos",)  # items are sequences [T, C, 64, 64], not images
SOURCES = ("auto", "official", "procedural")  # the data-source vocabulary, defined once
PROCEDURAL_DATASETS = ("dsprites", "shapes3d", "sprite_videos")
IMAGE_SIZE = 64

# The observed factors of each data set (e.g. for default latent sizes); the loaders use these.
FACTOR_NAMES = MappingProxyType(
    {
        "dsprites": ("shape", "scale", "orientation", "posX", "posY"),
        "smallnorb": ("category", "elevation", "azimuth", "lighting"),
        "shapes3d": ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
        "chairs": (),
        "celeba": (),
        "sprite_videos": ("shape", "colour", "scale", "motion", "rotation"),
    }
)
