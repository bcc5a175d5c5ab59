"""Synthetic-data utility (the Generative Genomics design): is a model's synthetic data as useful as real
data for a cell-type classifier, and can a classifier tell the two apart?

Three settings, each scored with an XGBoost classifier on log1p(CP10k) features:
* ``real_to_real``: trained on real training cells, tested on real held-out cells (the reference);
* ``real_to_synthetic``: the same classifier tested on synthetic cells (does synthetic data look like its label?);
* ``synthetic_to_real``: trained on synthetic cells, tested on real held-out cells (can it stand in for real data?).
Scores: precision, recall, F1 and support per class, macro and micro F1 (sklearn). ``discriminator_auc`` is the
cross-validated ROC AUC of a classifier separating real held-out from synthetic cells (0.5 = indistinguishable).
No torch here: the synthetic cells come from ``TrainedModel.generate`` (scmix.models.trained); ``judge`` makes and
scores them as the rule does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import LabelEncoder

from scmix.data.expression import sparse_log1p_cp10k
from scmix.data.sources.select import subsample
from scmix.errors import ScmixInputError
from scmix.evaluation.metrics import top_variable_genes

log = logging.getLogger("scmix.evaluation.synthetic")

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
    """The classifier's input: sparse log1p(CP10k) ``logx`` (``scmix.data.expression.sparse_log1p_cp10k``) on the
    ``features`` genes (cells x features, float32, the precision XGBoost reads); only those columns are densified."""
    return logx[:, features].toarray().astype(np.float32)


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


def matched_rows(y_real, y_synth, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the real and of the synthetic cells with the same number of cells of every label (the smaller
    count of the two, drawn without replacement), so that a discriminator cannot tell them apart by how common
    each label is (synthetic cells come ``cells_per_label`` per label, real ones in the eval set's proportions)."""
    y_real, y_synth = np.asarray(y_real, dtype=str), np.asarray(y_synth, dtype=str)
    real_rows, synth_rows = [], []
    for label in sorted(set(y_real) & set(y_synth)):
        a, b = np.flatnonzero(y_real == label), np.flatnonzero(y_synth == label)
        n = min(len(a), len(b))
        real_rows.append(rng.choice(a, n, replace=False))
        synth_rows.append(rng.choice(b, n, replace=False))
    return (np.sort(np.concatenate(real_rows)) if real_rows else np.zeros(0, dtype=int),
            np.sort(np.concatenate(synth_rows)) if synth_rows else np.zeros(0, dtype=int))  # fmt: skip


def discriminator(real, synth, *, seed: int = 0, folds: int = 5, device: str = "cpu", n_jobs: int = 1,
                  y_real=None, y_synth=None, **params) -> tuple[float, np.ndarray]:  # fmt: skip
    """Out-of-fold ROC AUC of an XGBoost classifier telling real (0) from synthetic (1) cells, and the mean over
    folds of its feature importances (XGBoost's gain, summing to 1): the features that tell the two apart.

    With labels (``y_real``, ``y_synth``) the two sets are matched label by label (:func:`matched_rows`), so the
    classifier judges how real the cells of each label look, not the label proportions; without, the larger group
    is subsampled to the size of the smaller. NaN with fewer cells than folds."""
    rng = np.random.default_rng(seed)
    if y_real is not None and y_synth is not None:
        rows_real, rows_synth = matched_rows(y_real, y_synth, rng)
    else:
        n = min(real.shape[0], synth.shape[0])
        rows_real = np.sort(rng.choice(real.shape[0], n, replace=False))
        rows_synth = np.sort(rng.choice(synth.shape[0], n, replace=False))
    n = len(rows_real)
    if n < folds:
        log.warning("the discriminator needs at least %d real and synthetic cells, got %d: AUC not scored", folds, n)
        return float("nan"), np.full(real.shape[1], np.nan)
    real, synth = real[rows_real], synth[rows_synth]
    X = np.vstack([real, synth])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    scores = np.zeros(len(y))
    importance = np.zeros(X.shape[1])
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        clf = make_classifier(seed, 2, device=device, n_jobs=n_jobs, **params).fit(X[train], y[train])
        scores[test] = clf.predict_proba(X[test])[:, 1]
        importance += np.asarray(clf.feature_importances_, dtype=float) / folds
    return float(roc_auc_score(y, scores)), importance


def discriminator_auc(real, synth, **kwargs) -> float:
    """The AUC of :func:`discriminator`."""
    return discriminator(real, synth, **kwargs)[0]


# the discriminator's most informative genes, in the table and the log
N_TOP_FEATURES = 10


def judge(model, train_cells, y_train, held_counts, y_held, *, label_key: str, cells_per_label: int, n_features: int,
          max_train_cells: int | None, generation: str, seed: int = 0, label_map: Mapping[str, str] | None = None,
          label_map_path=None, device: str = "cpu", n_jobs: int = 1, per_label_library: bool = True,
          names: Mapping[str, str] | None = None) -> pd.DataFrame:  # fmt: skip
    """The synthetic-data utility of one conditional model on one eval set, as the rule synthetic writes it (long:
    level, setting, class, metric, value): ``model`` generates ``cells_per_label`` cells per label
    (``TrainedModel.generate`` in mode ``generation``, libraries from ``train_cells``, or from the model's library
    prior without ``per_label_library``); the three settings at the fine level (and the coarse one with
    ``label_map``); the discriminator's AUC and its ``N_TOP_FEATURES`` most informative genes (``importance``).
    ``train_cells``: the model's prepared training cells; ``held_counts``: the eval set's counts on the model's
    genes; ``names``: model, mix and dataset, for messages."""
    names = dict(names or {})
    X_synth, y_synth = model.generate(train_cells.obs, label_key, cells_per_label, seed=seed, mode=generation,
                                      cells=train_cells if per_label_library else None)  # fmt: skip
    log_train = sparse_log1p_cp10k(train_cells.counts)  # per cell: its rows are those of any subset of the cells
    features = top_variable_genes(log_train, n_features)  # the classifier's genes, over all training cells
    # the real training cells the classifier is fitted on: all, or a seeded draw of max_train_cells in their order
    rows = subsample(len(y_train), max_train_cells, seed)
    y_train = np.asarray(y_train)[rows]
    logs = (log_train[rows], sparse_log1p_cp10k(held_counts), sparse_log1p_cp10k(X_synth))
    real_train, real_held, synth = (feature_matrix(logx, features) for logx in logs)
    log.info("%d real training (of %d), %d real held-out, %d synthetic cells (%d per label, %s generation); %d "
             "feature genes", len(y_train), train_cells.n_cells, len(y_held), len(y_synth), cells_per_label,
             generation, len(features))  # fmt: skip
    levels = [("fine", y_train, y_held, y_synth)]
    if label_map is not None:
        named = ((y_train, {"mix": names.get("mix")}), (y_held, {"dataset": names.get("dataset")}),
                 (y_synth, {"model": names.get("model")}))  # fmt: skip
        levels.append(("coarse", *(coarse_labels(y, label_map, path=label_map_path, **d) for y, d in named)))
    parts = []
    for level, a, b, c in levels:
        scores = utility(real_train, a, real_held, b, synth, c, seed=seed, device=device, n_jobs=n_jobs)
        scores.insert(0, "level", level)
        parts.append(scores)
        macro = scores.query("`class` == 'macro' and metric == 'f1'").set_index("setting")["value"]
        log.info("%s level macro F1: real->real %.3f, real->synthetic %.3f, synthetic->real %.3f", level,
                 macro["real_to_real"], macro["real_to_synthetic"], macro["synthetic_to_real"])  # fmt: skip
    # real and synthetic cells matched on the coarsest labels there are: a model's labels and another dataset's
    # may meet only through the label map
    _, _, y_held_match, y_synth_match = levels[-1]
    auc, importance = discriminator(real_held, synth, seed=seed, device=device, n_jobs=n_jobs, y_real=y_held_match,
                                    y_synth=y_synth_match)  # fmt: skip
    top = np.argsort(-np.nan_to_num(importance), kind="stable")[:N_TOP_FEATURES]
    genes = [str(g) for g in model.genes[features[top]]]
    log.info("real-vs-synthetic discriminator AUC %.3f (0.5 = indistinguishable); its most informative genes: %s",
             auc, ", ".join(f"{g} {v:.3f}" for g, v in zip(genes, importance[top], strict=True)))  # fmt: skip
    rows = [{"level": "all", "setting": "discriminator", "class": "all", "metric": "auc", "value": auc}]
    rows += [{"level": "all", "setting": "discriminator", "class": g, "metric": "importance", "value": float(v)}
             for g, v in zip(genes, importance[top], strict=True)]  # fmt: skip
    parts.append(pd.DataFrame(rows))
    return pd.concat(parts, ignore_index=True)
