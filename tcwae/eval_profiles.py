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


@dataclass(frozen=True)
class EvalProfile:
    """The sample sizes of one profile: reconstruction images and each metric's draws."""

    rec_images: int
    metric_sizes: Mapping[str, int]


PROFILES: Mapping[str, EvalProfile] = MappingProxyType(
    {
        "smoke": EvalProfile(
            rec_images=512,
            metric_sizes=MappingProxyType(
                {
                    "num_train": 400,
                    "num_test": 200,
                    "factor_vae_train": 100,
                    "factor_vae_eval": 50,
                    "factor_vae_variance": 400,
                    "factor_vae_batch": 16,
                }
            ),
        ),
        "quick": EvalProfile(
            rec_images=5_000,
            metric_sizes=MappingProxyType(
                {
                    "num_train": 5_000,
                    "num_test": 2_500,
                    "factor_vae_train": 2_000,
                    "factor_vae_eval": 1_000,
                    "factor_vae_variance": 5_000,
                    "factor_vae_batch": 64,
                }
            ),
        ),
        "paper": EvalProfile(
            rec_images=10_000,
            metric_sizes=MappingProxyType(
                {
                    "num_train": 10_000,
                    "num_test": 5_000,
                    "factor_vae_train": 10_000,
                    "factor_vae_eval": 5_000,
                    "factor_vae_variance": 10_000,
                    "factor_vae_batch": 64,
                }
            ),
        ),
    }
)
