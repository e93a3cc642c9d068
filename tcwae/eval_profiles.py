"""How many samples every score of a trained model is computed on, by evaluation profile.

`paper` is the reference library's sizes (disentanglement_lib's unsupervised study configs) and
10,000 images for the reconstruction score; `quick` and `smoke` are smaller for CPU sweeps and
tests, `rung` scores a successive-halving rung. `TrainConfig.eval_profile` names one of these;
`tcwae.metrics.evaluate` reads the metric sizes and the reconstruction score reads `rec_images`.
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
    # A successive-halving rung: MIG and SAP on more points than `smoke`, the FactorVAE score
    # (the costly one: 64 images a vote) on smoke's small votes.
    "rung": (512, 1_000, 500, 100, 100, 1_000, 16),
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
