"""Per-feature attributions for ``:explain``: the runtime's own TreeSHAP, else sampled Shapley.

Runtimes with ``explain`` (XGBoost, LightGBM) give exact TreeSHAP values of the raw score; any
other model gets permutation-sampled Shapley values (Strumbelj & Kononenko, 2014) of
``predict_proba[:, k]`` or ``predict`` against background rows. Classifiers explain one class per
row: the positive class (index 1) if binary, else the predicted class. Either way
``base_value + attributions.sum() == output``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cloche.errors import InvalidInput
from cloche.runtimes.base import LoadedModel, has_explain, has_predict_proba

MAX_BACKGROUND = 100
# Cells (rows x features) per model call: memory stays near 32 MB, calls big enough to amortise.
MAX_CELLS = 4_000_000
MAX_WORK = 1_000_000_000  # cells per request: about a minute of CPU for a mid-sized forest


@dataclass(frozen=True)
class Explanation:
    """Attributions per row and feature, and the base value they add up from."""

    method: Literal["native", "sampled_shapley"]
    attributions: np.ndarray  # rows x features
    base_value: np.ndarray  # one per row: the bias (native) or E[f(background)] (sampled)
    feature_names: list[str]
    output: str  # what is explained, e.g. "probability of class 1"
    classes: list[Any] | None = None  # the class explained in each row, for classifiers
    details: dict[str, int] = field(default_factory=dict)  # sampled: permutations, rows used

    def to_dict(self) -> dict[str, Any]:
        rows = self.attributions.tolist()
        body: dict[str, Any] = {
            "explanations": [dict(zip(self.feature_names, r, strict=True)) for r in rows],
            "base_values": self.base_value.tolist(),
            "method": self.method,
            "output": self.output,
        }
        return body | ({} if self.classes is None else {"classes": self.classes}) | self.details


def explain(
    model: LoadedModel,
    X: np.ndarray,
    *,
    background: np.ndarray | None,
    feature_names: list[str],
    samples: int = 64,
    seed: int = 0,
    classes: Sequence[Any] | None = None,
) -> Explanation:
    """Attributions for each row of ``X``; ``classes`` labels the classes (else indices).

    ``background``: reference rows for the sampled method (at most 100, drawn with ``seed``);
    without it the reference is one row of ``X``'s column means (the commonest value for text),
    and a lone row, its own reference, is refused. TreeSHAP ignores it (it uses the training
    cover stored in the trees).
    """
    X = np.asarray(X)
    if X.ndim != 2 or not len(X) or not X.shape[1]:
        raise InvalidInput(f"explanations need a 2-D table of rows, got shape {list(X.shape)}")
    names = list(feature_names) or [f"feature_{j}" for j in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise InvalidInput(f"{len(names)} feature names for rows of {X.shape[1]} values")
    if has_explain(model):
        return _native(model, X, names, classes)
    if samples < 2:
        raise InvalidInput(f"samples must be at least 2, got {samples}")
    if background is None and len(X) < 2:
        hint = 'send at least two rows, or reference rows (e.g. training data) as "background"'
        raise InvalidInput("explaining one row needs background rows to compare it with", hint=hint)
    rng = np.random.default_rng(seed)
    bg = _background(X, background, rng)
    return _sampled(model, X, bg, names, _permutations(X.shape[1], samples, rng), classes)


def _native(model: Any, X: np.ndarray, names: list[str], labels: Any) -> Explanation:
    contribs = np.asarray(model.explain(X), dtype=np.float64)
    explained: list[Any] | None = None
    if contribs.ndim == 3:  # multiclass: the predicted class has the largest margin
        k = contribs.sum(axis=2).argmax(axis=1)
        contribs = contribs[np.arange(len(k)), k]
        explained, output = _labels(labels, k), "raw score (margin) of the predicted class"
    elif has_predict_proba(model):  # binary: one margin, the log-odds of the positive class
        explained = _labels(labels, np.ones(len(X), dtype=np.int64))
        output = f"log-odds of class {explained[0]}"
    else:
        # The margin is the prediction itself unless the objective has a link (log, logit).
        pred = np.asarray(model.predict(X))
        same = pred.dtype.kind in "biuf" and np.allclose(contribs.sum(axis=1), pred, rtol=1e-4)
        output = "prediction" if same else "raw score (before the link function)"
    return Explanation("native", contribs[:, :-1], contribs[:, -1], names, output, explained)


def _sampled(
    model: Any, X: np.ndarray, bg: np.ndarray, names: list[str], perms: np.ndarray, labels: Any
) -> Explanation:
    k, explained, output = None, None, "prediction"
    if has_predict_proba(model):
        proba = np.asarray(model.predict_proba(X))
        binary = proba.shape[1] <= 2
        k = np.full(len(X), proba.shape[1] - 1) if binary else proba.argmax(axis=1)
        explained = _labels(labels, k)
        output = f"probability of class {explained[0]}"
        output = output if binary else "probability of the predicted class"
    n_perm, d = perms.shape
    rank = np.argsort(perms, axis=1)  # rank[p, j]: the position of feature j in permutation p
    # Coalition t of permutation p holds its first t features: a chain from none to all.
    chains = rank[:, None, :] < np.arange(d + 1)[None, :, None]
    # Permutations share coalitions (always for few features): evaluate each one once.
    masks, where = np.unique(chains.reshape(-1, d), axis=0, return_inverse=True)
    if len(X) * len(masks) * len(bg) * d > MAX_WORK:
        hint = "explain fewer rows at a time, or pass fewer samples or background rows"
        raise InvalidInput(f"explaining {len(X)} rows would take too long", hint=hint)
    values = _coalition_values(model, X, bg, masks, k)[:, where.reshape(n_perm, d + 1)]
    # Each step's gain goes to the feature added; along a chain the gains telescope, so every
    # row's attributions sum exactly to f(x) - mean f(background), whatever was sampled.
    gains = np.diff(values, axis=2)
    phi = np.take_along_axis(gains, np.broadcast_to(rank, gains.shape), axis=2).mean(axis=1)
    details = {"permutations": n_perm, "background_rows": len(bg)}
    return Explanation("sampled_shapley", phi, values[:, 0, 0], names, output, explained, details)


def _permutations(d: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    if math.factorial(min(d, 20)) <= samples:  # few enough to take all: exact Shapley values
        return np.array(list(itertools.permutations(range(d))))
    half = rng.permuted(np.tile(np.arange(d), (samples // 2, 1)), axis=1)
    # Antithetic pairs (each with its reverse) split every pairwise interaction exactly in
    # half, so they are exact for models with at most pairwise interactions and vary less.
    return np.concatenate([half, half[:, ::-1]])


def _background(X: np.ndarray, background: np.ndarray | None, rng: Any) -> np.ndarray:
    if background is None:
        return _column_means(X)[None, :]
    bg = np.asarray(background)
    if bg.ndim != 2 or not len(bg) or bg.shape[1] != X.shape[1]:
        raise InvalidInput(f"background rows need {X.shape[1]} values, got shape {list(bg.shape)}")
    if len(bg) > MAX_BACKGROUND:
        bg = bg[np.sort(rng.choice(len(bg), MAX_BACKGROUND, replace=False))]
    return bg


def _column_means(X: np.ndarray) -> np.ndarray:
    out = np.empty(X.shape[1], dtype=X.dtype if X.dtype == object else np.float64)
    for j, column in enumerate(X.T):
        if any(isinstance(v, str) for v in column.tolist()):  # text has no mean: the commonest
            out[j] = Counter(column.tolist()).most_common(1)[0][0]
        else:  # None (missing) reads as NaN; an all-missing column's mean is NaN, as it should be
            with warnings.catch_warnings(action="ignore", category=RuntimeWarning):
                out[j] = np.nanmean(column.astype(np.float64))
    return out


def _coalition_values(
    model: Any, X: np.ndarray, bg: np.ndarray, masks: np.ndarray, k: np.ndarray | None
) -> np.ndarray:
    """v[i, u]: the mean output over background rows given row i's own values where masks[u]."""
    n, d = X.shape
    pairs, size = n * len(masks), len(bg)
    values = np.empty(pairs)
    step = max(1, MAX_CELLS // (size * d))  # (row, coalition) pairs per model call
    for start in range(0, pairs, step):
        pair = np.arange(start, min(start + step, pairs))
        i, u = np.divmod(pair, len(masks))
        Z = np.where(masks[u][:, None, :], X[i][:, None, :], bg[None, :, :]).reshape(-1, d)
        out = _output(model, Z, None if k is None else np.repeat(k[i], size))
        values[pair] = out.reshape(-1, size).mean(axis=1)
    return values.reshape(n, len(masks))


def _output(model: Any, Z: np.ndarray, k: np.ndarray | None) -> np.ndarray:
    """The explained output for each row of Z: the probability of class k, else predict."""
    if k is not None:
        return np.asarray(model.predict_proba(Z), dtype=np.float64)[np.arange(len(Z)), k]
    out = np.asarray(model.predict(Z))
    if out.ndim != 1 or out.dtype.kind not in "biuf":
        raise InvalidInput(
            "this model cannot be explained: it predicts neither probabilities nor one number "
            f"per row (got {out.dtype} values of shape {list(out.shape)})"
        )
    return out.astype(np.float64)


def _labels(labels: Any, k: np.ndarray) -> list[Any]:
    # Labels may be numpy scalars, which JSON encoders refuse: use their Python values.
    known = [v.item() if hasattr(v, "item") else v for v in (() if labels is None else labels)]
    return [known[c] if c < len(known) else c for c in k.tolist()]
