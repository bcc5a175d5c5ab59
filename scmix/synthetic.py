"""Synthetic-data utility (the Generative Genomics design): is a model's synthetic data as useful as real
data for a cell-type classifier, and can a classifier tell the two apart?

Three settings, each scored with an XGBoost classifier on log1p(CP10k) features:
* ``real_to_real``: trained on real training cells, tested on real held-out cells (the reference);
* ``real_to_synthetic``: the same classifier tested on synthetic cells (does synthetic data look like its label?);
* ``synthetic_to_real``: trained on synthetic cells, tested on real held-out cells (can it stand in for real data?).
Scores: precision, recall, F1 and support per class, macro and micro F1 (sklearn). ``discriminator_auc`` is the
cross-validated ROC AUC of a classifier separating real held-out from synthetic cells (0.5 = indistinguishable).
No torch here: the synthetic cells come from ``TrainedModel.generate`` (scmix.trained).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import LabelEncoder

from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.synthetic")

SETTINGS = ("real_to_real", "real_to_synthetic", "synthetic_to_real")


def coarse_labels(labels: np.ndarray, label_map: Mapping[str, str], *, path=None, **where) -> np.ndarray:
    """Map fine labels to coarse ones; a label the map lacks is an error that lists every such label."""
    labels = np.asarray(labels, dtype=str)
    missing = sorted(str(v) for v in set(labels) - set(label_map))
    if missing:
        raise ScmixInputError(f"labels missing from the label map: {missing}", path=str(path) if path else None,
                              **where)  # fmt: skip
    return np.array([label_map[v] for v in labels], dtype=object).astype(str)


def feature_matrix(logx, features: np.ndarray) -> np.ndarray:
    """The classifier's input: sparse log1p(CP10k) ``logx`` (``scmix.evaluate.sparse_log1p_cp10k``) on the
    ``features`` genes (cells x features, float32, the precision XGBoost reads); only those columns are densified."""
    return logx[:, features].toarray().astype(np.float32)


def classifier_rows(n_cells: int, max_cells: int | None, seed: int) -> np.ndarray:
    """The real training cells the classifier is fitted on: all of them, or a seeded uniform draw of
    ``max_cells`` (synthetic.max_train_cells) in their original order."""
    if not max_cells or n_cells <= max_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, max_cells, replace=False))


def make_classifier(seed: int, n_classes: int, *, device: str = "cpu", n_jobs: int = 1, **params):
    """An XGBoost classifier with the study's settings (hist trees; ``device`` cuda when one is visible)."""
    from xgboost import XGBClassifier

    settings = {"n_estimators": 100, "max_depth": 6, "learning_rate": 0.2, "subsample": 0.8,
                "colsample_bytree": 0.5, "tree_method": "hist"}  # fmt: skip
    settings.update(params)
    objective = "binary:logistic" if n_classes == 2 else "multi:softprob"
    return XGBClassifier(objective=objective, random_state=seed, n_jobs=n_jobs, device=device, **settings)


def classification_scores(y_true, y_pred, classes) -> pd.DataFrame:
    """Long table (class, metric, value): per-class precision/recall/f1/support, then macro and micro F1."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(classes), zero_division=0)
    rows = []
    for i, c in enumerate(classes):
        rows += [(c, "precision", p[i]), (c, "recall", r[i]), (c, "f1", f[i]), (c, "support", float(s[i]))]
    for avg in ("macro", "micro"):
        rows.append((avg, "f1", f1_score(y_true, y_pred, labels=list(classes), average=avg, zero_division=0)))
    rows.append(("all", "support", float(len(y_true))))
    return pd.DataFrame(rows, columns=["class", "metric", "value"])


def utility(real_train, y_train, real_test, y_test, synth, y_synth, *, seed: int = 0, device: str = "cpu",
            n_jobs: int = 1, **params) -> pd.DataFrame:  # fmt: skip
    """Scores of the three settings (long table with a ``setting`` column).

    Classes are the labels present in all three label sets (the synthetic cells cover the model's
    training labels, the held-out set may hold others); cells of any other label are left out of every
    setting, and the count left out is logged. With fewer than two shared labels there is nothing to
    classify: macro and micro F1 are NaN.
    """
    y_train, y_test, y_synth = (np.asarray(y, dtype=str) for y in (y_train, y_test, y_synth))
    classes = sorted(str(c) for c in set(y_train) & set(y_test) & set(y_synth))
    if len(classes) < 2:
        # e.g. a model trained on blood judged on a tumour eval set: no classification task to score
        log.warning("only %d label(s) shared by the real training, real held-out and synthetic cells (%s): the "
                    "settings are not scored (NaN)", len(classes), classes)  # fmt: skip
        return pd.DataFrame(
            [(setting, avg, "f1", np.nan) for setting in SETTINGS for avg in ("macro", "micro")],
            columns=["setting", "class", "metric", "value"],
        )
    keep = [np.isin(y, classes) for y in (y_train, y_test, y_synth)]
    for name, k in zip(("real training", "real held-out", "synthetic"), keep, strict=True):
        if (~k).sum():
            log.info("%d %s cells have labels outside the shared %d and are left out", (~k).sum(), name, len(classes))
    X_tr, X_te, X_sy = real_train[keep[0]], real_test[keep[1]], synth[keep[2]]
    y_tr, y_te, y_sy = y_train[keep[0]], y_test[keep[1]], y_synth[keep[2]]
    enc = LabelEncoder().fit(classes)

    def fit(X, y):
        return make_classifier(seed, len(classes), device=device, n_jobs=n_jobs, **params).fit(X, enc.transform(y))

    def predict(clf, X):
        return enc.inverse_transform(clf.predict(X).astype(int))

    on_real = fit(X_tr, y_tr)
    on_synth = fit(X_sy, y_sy)
    parts = []
    for setting, clf, X, y in (
        ("real_to_real", on_real, X_te, y_te),
        ("real_to_synthetic", on_real, X_sy, y_sy),
        ("synthetic_to_real", on_synth, X_te, y_te),
    ):
        scores = classification_scores(y, predict(clf, X), classes)
        scores.insert(0, "setting", setting)
        parts.append(scores)
    return pd.concat(parts, ignore_index=True)


def discriminator_auc(real, synth, *, seed: int = 0, folds: int = 5, device: str = "cpu", n_jobs: int = 1,
                      **params) -> float:  # fmt: skip
    """Out-of-fold ROC AUC of an XGBoost classifier telling real (0) from synthetic (1) cells.

    The larger group is subsampled to the size of the smaller so the two are balanced; NaN with fewer
    cells than folds."""
    rng = np.random.default_rng(seed)
    n = min(real.shape[0], synth.shape[0])
    if n < folds:
        log.warning("the discriminator needs at least %d real and synthetic cells, got %d: AUC not scored", folds, n)
        return float("nan")
    real = real[np.sort(rng.choice(real.shape[0], n, replace=False))]
    synth = synth[np.sort(rng.choice(synth.shape[0], n, replace=False))]
    X = np.vstack([real, synth])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        clf = make_classifier(seed, 2, device=device, n_jobs=n_jobs, **params).fit(X[train], y[train])
        scores[test] = clf.predict_proba(X[test])[:, 1]
    return float(roc_auc_score(y, scores))
