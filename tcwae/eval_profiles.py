"""How many samples every score of a trained model is computed on, by evaluation profile.

`paper` is the reference library's sizes (disentanglement_lib's unsupervised study configs) and
10,000 images for the reconstruction score; `quick` and `smoke` are smaller for CPU sweeps and
tests. `TrainConfig.eval_profile` names one of these; `tcwae.metrics.evaluate` reads the metric
sizes and the trainer's reconstruction score reads `rec_images`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

METRIC_SIZE_NAMES = (
    "num_train",
    "num_test",
    "factor_vae_train",
    "factor_vae_eval",
    "factor_vae_variance",
    "factor_vae_batch",
)
# profile: images for `rec`, then the metric sizes in the order of METRIC_SIZE_NAMES
_TABLE = {
    "smoke": (512, 400, 200, 100, 50, 400, 16),
    "quick": (5_000, 5_000, 2_500, 2_000, 1_000, 5_000, 64),
    "paper": (10_000, 10_000, 5_000, 10_000, 5_000, 10_000, 64),
}


@dataclass(frozen=True)
class EvalProfile:
    """The sample sizes of one profile: reconstruction images and each metric's draws."""

    rec_images: int
    metric_sizes: Mapping[str, int]


PROFILES: Mapping[str, EvalProfile] = MappingProxyType(
    {
        name: EvalProfile(rec, MappingProxyType(dict(zip(METRIC_SIZE_NAMES, sizes, strict=True))))
        for name, (rec, *sizes) in _TABLE.items()
    }
)
