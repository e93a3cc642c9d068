"""InfoMEC (Hsu et al. 2023; seed 003) and modularity / explicitness (Ridgeway & Mozer 2018).

InfoMEC follows `compute_infomec` of kylehkhsu/latent_quantization: a normalised mutual information
matrix NMI[factor, code] = I(factor; code) / H(factor), with I estimated by the k-nearest-neighbour
estimator of sklearn's `mutual_info_classif` (k = 10) for continuous codes and by the plug-in
estimate for discrete ones; codes whose range is below 1/20 of the largest range are inactive and
left out; InfoM (modularity) is the mean over active codes of max / sum of the code's NMI column,
InfoC (compactness) the mean over factors of max / sum of the factor's NMI row, both rescaled so
that information spread evenly is 0 and one-to-one is 1; InfoE (explicitness) is 1 - (log-loss of
an unregularised, class-balanced multinomial logistic regression from standardised codes to the
factor) / (log-loss of the same model without inputs, which predicts every class with probability
1/K), averaged over factors. (Binning continuous codes instead, as MIG does, biases every entry up
by about (bins - 1)(K - 1) / 2n nats and pulls InfoM and InfoC well below the published values.)

Modularity and explicitness are the reference library's `modularity_explicitness.py`.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from tcwae.metrics._checks import codes_and_factors, train_and_test, varying_factors
from tcwae.metrics.information import (
    continuous_discrete_mutual_info,
    discrete_entropy,
    discrete_mutual_info,
)

ACTIVE_RANGE_FRACTION = 1 / 20
NUM_NEIGHBORS = 10  # latent_quantization's choice for mutual_info_classif


def modularity(mutual_info: np.ndarray) -> float:
    """Modularity of a mutual-information matrix `[codes, factors]` (reference `modularity`).

    Per code: 1 - (sum of squared MI over the other factors) / ((factors - 1) * max squared MI);
    codes without information score 0. With a single factor every informative code scores 1.
    """
    matrix = np.asarray(mutual_info, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(
            f"mutual_info must be a non-empty [codes, factors] matrix, got {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ValueError("mutual_info contains NaN or infinite values")
    squared = np.square(matrix)
    largest = squared.max(axis=1)
    informative = largest > 0
    score = np.zeros(len(matrix))
    if matrix.shape[1] == 1:
        score[informative] = 1.0
    else:
        rest = squared.sum(axis=1) - largest
        score[informative] = 1.0 - rest[informative] / (
            largest[informative] * (matrix.shape[1] - 1)
        )
    return float(np.mean(score))


def explicitness(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
) -> dict[str, float]:
    """Explicitness (reference `explicitness_per_factor`): mean over factors of the macro ROC-AUC of
    a default logistic regression from codes standardised with the train statistics.

    Returns `train` and `test`. Classes absent from the evaluated points are skipped in the AUC
    (the reference fails there).
    """
    train_codes, train_factors, test_codes, test_factors = train_and_test(
        train_codes, train_factors, test_codes, test_factors
    )
    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    train_inputs, test_inputs = (train_codes - mean) / std, (test_codes - mean) / std
    scores: dict[str, list[float]] = {"train": [], "test": []}
    for factor in varying_factors(train_factors):
        model = LogisticRegression().fit(train_inputs, train_factors[:, factor])
        for split, inputs, labels in (
            ("train", train_inputs, train_factors[:, factor]),
            ("test", test_inputs, test_factors[:, factor]),
        ):
            scores[split].append(_macro_auc(labels, model.predict_proba(inputs), model.classes_))
    return {split: float(np.mean(values)) for split, values in scores.items()}


def _macro_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Mean one-vs-rest ROC-AUC over the classes that occur among `labels` (and not alone)."""
    aucs = []
    for column, value in enumerate(classes):
        positive = labels == value
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, probabilities[:, column]))
    return float(np.mean(aucs)) if aucs else 0.0


def normalised_mutual_info(
    codes: np.ndarray, factors: np.ndarray, discrete_latents: bool = False
) -> np.ndarray:
    """NMI `[factors, codes]`: I(factor; code) / H(factor); k-NN estimate for continuous codes,
    plug-in for discrete ones."""
    codes, factors = codes_and_factors(codes, factors)
    entropy = discrete_entropy(factors)
    if (entropy <= 0).any():
        raise ValueError("normalised mutual information needs factors that take several values")
    if discrete_latents:
        mutual_info = discrete_mutual_info(codes, factors)
    else:
        mutual_info = continuous_discrete_mutual_info(codes, factors, NUM_NEIGHBORS)
    return mutual_info.T / entropy[:, None]


def _rescaled_concentration(nmi: np.ndarray, axis: int) -> float:
    """Mean over the other axis of max / sum along `axis`, rescaled from [1/m, 1] to [0, 1].

    Entries without any information count as chance (0); with a single entry along `axis` the
    information cannot be spread, so informative entries score 1.
    """
    size = nmi.shape[axis]
    total = nmi.sum(axis=axis)
    informative = total > 0
    ratio = np.zeros(len(total))
    ratio[informative] = nmi.max(axis=axis)[informative] / total[informative]
    if size == 1:
        return float(np.mean(informative))
    rescaled = np.where(informative, (ratio - 1 / size) / (1 - 1 / size), 0.0)
    return float(np.mean(rescaled))


def _balanced_log_loss(inputs: np.ndarray, labels: np.ndarray) -> float:
    """In-sample log-loss of the reference's unregularised class-balanced logistic regression."""
    model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=100, tol=1e-4)
    with warnings.catch_warnings():
        # separable codes (a perfect representation) never converge; the loss is still near 0
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        model.fit(inputs, labels)
    return float(log_loss(labels, model.predict_proba(inputs), labels=model.classes_))


def infomec(
    codes: np.ndarray, factors: np.ndarray, discrete_latents: bool = False
) -> dict[str, float]:
    """InfoM, InfoC and InfoE of codes `[n, d]` for factors `[n, k]`.

    `discrete_latents=True` treats each distinct code value as a symbol (quantised models): all
    codes with any spread are active and InfoE one-hot encodes them. Codes that are all inactive
    (constant) score 0 on all three.
    """
    codes, factors = codes_and_factors(codes, factors)
    factors = factors[:, varying_factors(factors)]
    ranges = codes.max(axis=0) - codes.min(axis=0)
    if discrete_latents:
        active = ranges > 0
    else:
        active = ranges > ranges.max() * ACTIVE_RANGE_FRACTION
    if not active.any():
        return {"infom": 0.0, "infoc": 0.0, "infoe": 0.0}
    nmi = normalised_mutual_info(codes[:, active], factors, discrete_latents)
    infom = _rescaled_concentration(nmi, axis=0)
    infoc = _rescaled_concentration(nmi, axis=1)

    if discrete_latents:
        inputs = np.concatenate(
            [
                (codes[:, [dim]] == np.unique(codes[:, dim])).astype(np.float64)
                for dim in range(codes.shape[1])
            ],
            axis=1,
        )
    else:
        std = codes.std(axis=0)
        inputs = (codes - codes.mean(axis=0)) / np.where(std > 0, std, 1.0)
    explicitness_per_factor = []
    for labels in factors.T:
        # without inputs the balanced model predicts every class with probability 1/K
        null_loss = np.log(len(np.unique(labels)))
        explicitness_per_factor.append(1.0 - _balanced_log_loss(inputs, labels) / null_loss)
    return {
        "infom": infom,
        "infoc": infoc,
        "infoe": float(np.mean(explicitness_per_factor)),
    }
