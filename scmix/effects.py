"""Effects of training-data composition, with their uncertainty: each sweep point against its reference
(:mod:`scmix.composition`), per model, eval set, metric and cell type; and the datamix study's three checks as
sentences.

The unit of replication is the seed: at one seed a point and its reference share their drawn cells, the start of
their models and the held-out cells they are scored on (the paired design). For a point ``A`` and its reference
``R`` on one eval set, let ``D[s, c] = A[s, c] - R[s, c]`` be the difference of a per-cell metric of eval cell
``c`` between the two models of seed ``s``. Then

- ``delta`` is the mean over seeds of the per-seed mean over cells of ``D`` (cells where either value is missing
  are left out);
- ``p_value`` is the two-sided one-sample t-test of the per-seed means against 0 (paired across seeds; with one
  seed there is no test);
- ``ci_low``, ``ci_high`` are the percentile interval of a bootstrap that resamples seeds and eval cells with
  replacement (the same cells for every seed of a replicate, so the pairing by cell is kept), seeded: the
  replicate weights of an eval set's cells depend only on ``seed``, the eval set, the cell group and their sizes,
  so a row's interval does not change when other models or mixes are added.

A verdict is ``helps`` (or ``hurts``) when ``p < 1 - confidence`` and the interval lies above (below) 0, else
``no detectable effect``; ``not tested`` with fewer than two seeds. Both the metrics are better when higher.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from scmix import composition
from scmix.effect_table import ALL_CELLS, COLUMNS, HELPS, HURTS, METRICS, NO_EFFECT, NOT_TESTED, REFERENCE, UNLABELLED

log = logging.getLogger("scmix.effects")

_CHUNK = 256  # bootstrap replicates drawn at a time


def seed_p_value(per_seed: np.ndarray) -> float:
    """Two-sided one-sample t-test of per-seed values against 0; NaN with fewer than two seeds. Identical values
    (no spread) give 0 if they are not 0, else 1."""
    x = np.asarray(per_seed, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan")
    if np.ptp(x) == 0:
        return 0.0 if x[0] != 0 else 1.0
    return float(stats.ttest_1samp(x, 0.0).pvalue)


def verdict(estimate: float, ci_low: float, ci_high: float, p_value: float, confidence: float) -> str:
    """helps / hurts / no detectable effect at this confidence; not tested without a p-value."""
    if not np.isfinite(p_value):
        return NOT_TESTED
    if p_value < 1 - confidence and ci_low > 0:
        return HELPS
    if p_value < 1 - confidence and ci_high < 0:
        return HURTS
    return NO_EFFECT


def _rng(seed: int, *key) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in key])


def bootstrap(per_seed: Callable[[np.ndarray], np.ndarray], n_seeds: int, n_cells: int, n_boot: int,
              rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """``n_boot`` replicates of the mean over seeds of a per-seed statistic, resampling cells and seeds.

    ``per_seed(W)`` takes cell weights ``W`` (replicates x cells: how often each cell is drawn) and returns the
    statistic of every seed under each replicate (seeds x replicates). Each replicate then draws the seeds with
    replacement. Replicates whose statistic is undefined (a group with no cell drawn) are NaN."""
    out = np.empty(n_boot)
    cell_p, seed_p = np.full(n_cells, 1 / n_cells), np.full(n_seeds, 1 / n_seeds)
    for start in range(0, n_boot, _CHUNK):
        b = min(_CHUNK, n_boot - start)
        w_cells = rng.multinomial(n_cells, cell_p, size=b).astype(float)
        w_seeds = rng.multinomial(n_seeds, seed_p, size=b).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = (w_seeds.T * per_seed(w_cells)).sum(axis=0) / n_seeds
    return out


def weighted_means(values: np.ndarray, mask: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The per-seed mean of ``values`` (seeds x cells) over the cells in ``mask``, as a function of cell weights."""
    x = np.where(mask, values, 0.0)
    m = mask.astype(float)
    return lambda w: (x @ w.T) / (m @ w.T)


def interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates left out)."""
    tail = 100 * (1 - confidence) / 2
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_effect(point: np.ndarray, reference: np.ndarray, *, confidence: float = 0.95, n_boot: int = 2000,
                  rng: np.random.Generator) -> dict:  # fmt: skip
    """The effect of ``point`` against ``reference`` (both seeds x cells of one metric, the same seeds and cells in
    the same order; NaN where missing): see the module docstring."""
    d = np.asarray(point, dtype=float) - np.asarray(reference, dtype=float)
    mask = np.isfinite(d)
    n_seeds, n_cells = d.shape
    with np.errstate(invalid="ignore"):
        per_seed = weighted_means(d, mask)(np.ones((1, n_cells)))[:, 0]
    estimate = float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else float("nan")
    lo, hi = interval(bootstrap(weighted_means(d, mask), n_seeds, n_cells, n_boot, rng), confidence)
    p = seed_p_value(per_seed)
    return {"delta": estimate, "ci_low": lo, "ci_high": hi, "p_value": p,
            "verdict": verdict(estimate, lo, hi, p, confidence)}  # fmt: skip


def _seed_means(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # a seed without a finite value is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1)


def _matrices(cells: pd.DataFrame, metric: str) -> tuple[dict[str, np.ndarray], list[int], pd.Index]:
    """One model on one eval set: per mix, its metric as seeds x cells (rows: the seeds all mixes have, columns:
    the eval cells in the order of the first table)."""
    cell_order = pd.Index(cells["cell_id"].drop_duplicates())
    seeds = sorted(set.intersection(*(set(g["seed"]) for _, g in cells.groupby("mix", observed=True))))
    out = {}
    for mix, g in cells.groupby("mix", observed=True):
        wide = g.pivot_table(index="seed", columns="cell_id", values=metric, aggfunc="first", dropna=False)
        out[mix] = wide.reindex(index=seeds, columns=cell_order).to_numpy(dtype=float)
    return out, seeds, cell_order


def cell_groups(cell_types: pd.Series, min_cells: int) -> dict[str, np.ndarray]:
    """``all`` and each labelled cell type with at least ``min_cells`` eval cells: a boolean column mask each."""
    groups = {ALL_CELLS: np.ones(len(cell_types), dtype=bool)}
    counts = cell_types.value_counts()
    for t in sorted(counts.index[counts >= min_cells].map(str)):
        if t not in UNLABELLED and t != ALL_CELLS:
            groups[t] = (cell_types.astype(str) == t).to_numpy()
    return groups


def composition_effects(cells: pd.DataFrame, points: Iterable[Mapping], *, confidence: float = 0.95,
                        n_boot: int = 2000, seed: int = 0, min_cells_per_type: int = 50) -> pd.DataFrame:  # fmt: skip
    """Every sweep point against its reference, per model x eval set x cell group x metric.

    ``cells``: the evaluate rule's per-cell tables of the sweeps' mixes, concatenated (model, mix, seed, eval_set,
    cell_id, cell_type and the metrics); ``points``: :func:`scmix.composition.sweep_points`. A metric without a
    finite value for a model (log p(x) of a Gaussian model) is left out."""
    points = list(points)
    rows = []
    for (model, eval_set), tab in cells.groupby(["model", "eval_set"], observed=True, sort=True):
        types = tab.drop_duplicates("cell_id").set_index("cell_id")["cell_type"]
        for metric in METRICS:
            if metric not in tab or not np.isfinite(tab[metric].to_numpy(dtype=float)).any():
                continue
            by_mix, seeds, order = _matrices(tab, metric)
            groups = cell_groups(types.reindex(order), min_cells_per_type)
            for group, cols in groups.items():
                n_cells = int(cols.sum())
                for p in points:
                    if p["mix"] not in by_mix or p["reference"] not in by_mix:
                        continue
                    a, r = by_mix[p["mix"]][:, cols], by_mix[p["reference"]][:, cols]
                    per_seed = _seed_means(a)
                    row = {"model": model, "eval_set": eval_set, "cell_type": group, "metric": metric,
                           **{k: p[k] for k in ("sweep", "kind", "added", "share", "total_cells", "mix", "reference")},
                           "n_seeds": len(seeds), "n_cells": n_cells, "mean": float(np.nanmean(per_seed)),
                           "seed_sd": float(np.std(per_seed, ddof=1)) if len(seeds) > 1 else float("nan"),
                           "reference_mean": float(np.nanmean(_seed_means(r)))}  # fmt: skip
                    if p["mix"] == p["reference"]:
                        row.update(delta=0.0, ci_low=0.0, ci_high=0.0, p_value=float("nan"), verdict=REFERENCE)
                    else:
                        # one eval set's cell group gets the same replicate weights in every row
                        rng = _rng(seed, eval_set, group, n_cells, len(seeds))
                        row.update(paired_effect(a, r, confidence=confidence, n_boot=n_boot, rng=rng))
                    rows.append(row)
        log.info("effects of model %s on eval set %s: %d rows so far", model, eval_set, len(rows))
    return pd.DataFrame(rows, columns=COLUMNS)


# ---------------------------------------------------------------------------------------------------------------
# the datamix study's checks


def coarse(labels: Iterable, label_map: Mapping[str, str] | None) -> list[str]:
    """Labels through the fine -> coarse map (labels it does not name unchanged)."""
    label_map = label_map or {}
    return [label_map.get(str(x), str(x)) for x in labels]


def seen_unseen(cells: pd.DataFrame, training_types: Mapping[tuple[str, int], set], mixes: Iterable[str], *,
                label_map: Mapping[str, str] | None = None, confidence: float = 0.95, n_boot: int = 2000,
                seed: int = 0, min_cells: int = 50) -> pd.DataFrame:  # fmt: skip
    """Per model x mix x eval set: the per-cell r of eval cells whose (coarse) cell type is absent from the mix's
    training cells of that seed (``training_types``, fine labels; both through ``label_map``) (unseen) against
    those whose type is there (seen). ``delta`` is unseen - seen
    (per seed, then the mean over seeds), with the bootstrap interval and t-test of :func:`paired_effect`'s kind
    (cells resampled within the eval set, seeds with replacement). Groups need ``min_cells`` cells in every seed;
    otherwise the row says so (verdict not tested)."""
    rows = []
    sub = cells[cells["mix"].isin(list(mixes))]
    for (model, mix, eval_set), tab in sub.groupby(["model", "mix", "eval_set"], observed=True, sort=True):
        wide = tab.pivot_table(index="seed", columns="cell_id", values="pearson", aggfunc="first", dropna=False)
        seeds = list(wide.index)
        first = tab.drop_duplicates("cell_id").set_index("cell_id")["cell_type"].reindex(wide.columns)
        labels = np.array(coarse(first, label_map))
        labelled = ~np.isin(labels, list(UNLABELLED))
        trained = {s: coarse(training_types.get((mix, s), ()), label_map) for s in seeds}
        seen = np.array([np.isin(labels, trained[s]) & labelled for s in seeds])
        unseen = ~seen & labelled
        x = wide.to_numpy(dtype=float)
        ok = np.isfinite(x)
        n_seen, n_unseen = int((seen & ok).sum(1).min()), int((unseen & ok).sum(1).min())
        nan = float("nan")
        row = {"model": model, "mix": mix, "eval_set": eval_set, "n_seeds": len(seeds), "n_seen": n_seen,
               "n_unseen": n_unseen, "unseen_types": ", ".join(sorted(set(labels[unseen.any(0)]))),
               "seen_mean": nan, "unseen_mean": nan, "delta": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
               "verdict": NOT_TESTED}  # fmt: skip
        if min(n_seen, n_unseen) >= min_cells:
            mean_seen, mean_unseen = weighted_means(x, seen & ok), weighted_means(x, unseen & ok)

            def per_seed(w, mean_seen=mean_seen, mean_unseen=mean_unseen):
                return mean_unseen(w) - mean_seen(w)

            ones = np.ones((1, x.shape[1]))
            d = per_seed(ones)[:, 0]
            reps = bootstrap(per_seed, len(seeds), x.shape[1], n_boot, _rng(seed, "seen_unseen", eval_set, mix))
            lo, hi = interval(reps, confidence)
            p = seed_p_value(d)
            v = verdict(float(d.mean()), lo, hi, p, confidence)
            row.update(seen_mean=float(mean_seen(ones).mean()), unseen_mean=float(mean_unseen(ones).mean()),
                       delta=float(d.mean()), ci_low=lo, ci_high=hi, p_value=p,
                       verdict={HELPS: "better", HURTS: "worse"}.get(v, v))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def _numbers(row, confidence: float) -> str:
    seeds = f"{int(row['n_seeds'])} seed{'s' if row['n_seeds'] != 1 else ''}"
    if not np.isfinite(row["p_value"]):
        return f"{row['delta']:+.3f}, {seeds}, not tested"
    return (f"{row['delta']:+.3f}, {100 * confidence:g} % CI {row['ci_low']:+.3f} to {row['ci_high']:+.3f}, "
            f"p = {row['p_value']:.2g}, {seeds}")  # fmt: skip


def claims(effects: pd.DataFrame, unseen: pd.DataFrame, points: Iterable[Mapping], *,
           confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
    """The datamix study's three checks, one sentence per row, from the numbers of the two tables:

    - ``unseen_cell_types``: on each share sweep's reference mix, are eval cells of cell types absent from training
      reconstructed worse than cells of seen types?
    - ``own_eval_set`` and ``base_eval_set``: does adding a dataset (at the largest share of its line) improve
      that dataset's eval set, and what does it do to the base's?
    - ``transfer``: what does it do to every other eval set?
    All on the mean per-cell Pearson r, all eval cells."""
    points = [p for p in points if p["kind"] == composition.SHARE]
    rows = []
    references = sorted({p["reference"] for p in points})
    for r in unseen[unseen["mix"].isin(references)].itertuples(index=False):
        r = r._asdict()
        where = f"{r['model']} trained on {r['mix']}, eval set {r['eval_set']}"
        if r["verdict"] == NOT_TESTED:
            why = ("its cells have no cell type labels" if r["n_unseen"] == r["n_seen"] == 0 else
                   "no eval cell is of a cell type absent from training" if r["n_unseen"] == 0 else
                   "no eval cell is of a cell type seen in training" if r["n_seen"] == 0 else
                   f"too few cells to compare ({r['n_unseen']} unseen, {r['n_seen']} seen)")  # fmt: skip
            sentence = f"{where}: {why}, so seen and unseen cell types are not compared."
        else:
            how = {"worse": "worse than", "better": "better than"}.get(r["verdict"], "no differently from")
            sentence = (f"{where}: cells of cell types unseen in training ({r['unseen_types']}; {r['n_unseen']} "
                        f"cells) are reconstructed {how} cells of seen types (r {r['unseen_mean']:.3f} vs "
                        f"{r['seen_mean']:.3f}; unseen - seen {_numbers(r, confidence)}).")  # fmt: skip
        rows.append({"claim": "unseen_cell_types", "model": r["model"], "sweep": "", "added": "", "share": np.nan,
                     "mix": r["mix"], "eval_set": r["eval_set"], "estimate": r["delta"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "p_value": r["p_value"], "n_seeds": r["n_seeds"],
                     "verdict": r["verdict"], "sentence": sentence})  # fmt: skip
    eff = effects[(effects["metric"] == "pearson") & (effects["cell_type"] == ALL_CELLS)]
    eff = eff[(eff["kind"] == composition.SHARE) & (eff["verdict"] != REFERENCE)]
    for (model, sweep, added), line in eff.groupby(["model", "sweep", "added"], sort=True):
        top = line[line["share"] == line["share"].max()]
        base = next(p["base"] for p in points if p["sweep"] == sweep)
        for r in top.to_dict("records"):
            claim = ("own_eval_set" if r["eval_set"] == added else "base_eval_set" if r["eval_set"] == base
                     else "transfer")  # fmt: skip
            whose = {"own_eval_set": f"{added}'s own eval set", "base_eval_set": f"the base's eval set ({base})",
                     "transfer": f"a third eval set, {r['eval_set']},"}[claim]  # fmt: skip
            outcome = {HELPS: "it helps", HURTS: "it hurts"}.get(r["verdict"], r["verdict"])
            sentence = (f"{model}: adding {added} at {100 * r['share']:g} % of the training cells ({r['mix']} "
                        f"against {r['reference']}) changes the mean per-cell r on {whose} by "
                        f"{_numbers(r, confidence)}: {outcome}.")  # fmt: skip
            rows.append({"claim": claim, "model": model, "sweep": sweep, "added": added, "share": r["share"],
                         "mix": r["mix"], "eval_set": r["eval_set"], "estimate": r["delta"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "p_value": r["p_value"], "n_seeds": r["n_seeds"],
                         "verdict": r["verdict"], "sentence": sentence})  # fmt: skip
    order = {"unseen_cell_types": 0, "own_eval_set": 1, "base_eval_set": 2, "transfer": 3}
    out = pd.DataFrame(rows, columns=["claim", "model", "sweep", "added", "share", "mix", "eval_set", "estimate",
                                      "ci_low", "ci_high", "p_value", "n_seeds", "verdict", "sentence"])  # fmt: skip
    return out.sort_values(["claim", "model", "sweep", "added", "eval_set"], key=lambda c: c.map(order)
                           if c.name == "claim" else c, kind="stable").reset_index(drop=True)  # fmt: skip
