"""Disentanglement metrics on arrays laid out points x dimensions, and the paper's ranking.

Definitions follow google-research/disentanglement_lib (MIG, FactorVAE score, SAP, DCI,
modularity / explicitness) and kylehkhsu/latent_quantization (InfoMEC); module docstrings name
every deviation.
"""

from tcwae.metrics.dci_scores import dci, dci_completeness, dci_disentanglement, importance_matrix
from tcwae.metrics.evaluation import PROFILES, evaluate
from tcwae.metrics.factor_vae import CachedEncoder, cached_encoder, factor_vae_score
from tcwae.metrics.info_metrics import explicitness, infomec, modularity, normalised_mutual_info
from tcwae.metrics.information import (
    continuous_discrete_mutual_info,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
)
from tcwae.metrics.mutual_info_gap import mig, mutual_info_matrix
from tcwae.metrics.ranking import (
    PAPER_RANKING,
    PAPER_SCORES,
    SCORES,
    TIE_BREAKS,
    crowding_distances,
    mean_rank_order,
    non_dominated_fronts,
    pareto_order,
    rank_configurations,
)
from tcwae.metrics.sap_score import sap, sap_score_matrix

__all__ = [
    "PAPER_RANKING",
    "PAPER_SCORES",
    "PROFILES",
    "SCORES",
    "TIE_BREAKS",
    "CachedEncoder",
    "cached_encoder",
    "continuous_discrete_mutual_info",
    "crowding_distances",
    "dci",
    "dci_completeness",
    "dci_disentanglement",
    "discrete_entropy",
    "discrete_mutual_info",
    "evaluate",
    "explicitness",
    "factor_vae_score",
    "histogram_discretize",
    "importance_matrix",
    "mean_rank_order",
    "infomec",
    "mig",
    "modularity",
    "mutual_info_matrix",
    "non_dominated_fronts",
    "normalised_mutual_info",
    "pareto_order",
    "rank_configurations",
    "sap",
    "sap_score_matrix",
]
