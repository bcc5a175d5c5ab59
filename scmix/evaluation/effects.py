"""Effects of training-data composition, with their uncertainty: each sweep point against its reference
(:mod:`scmix.data.composition`), per model, eval set, metric and cell type; and the datamix study's three checks as
sentences.

The unit of replication is the seed: at one seed a point and its reference share their drawn cells, the start of
their models and the held-out cells they are scored on (the paired design). For a point ``A`` and its reference
``R`` on one eval set, let ``D[s, c] = A[s, c] - R[s, c]`` be the difference of a per-cell metric of eval cell
``c`` between the two models of seed ``s`` (cells where either value is missing are left out). Then

- ``delta`` is the mean over seeds of the per-seed mean over cells of ``D``;
- its variance has two parts: the spread of the per-seed means between seeds (their variance over the number of
  seeds, ``n_seeds - 1`` degrees of freedom), and the spread between eval cells, since the eval cells are a
  sample too and the same cells serve every seed: the variance of the cells' means over seeds over their number,
  less the cell-by-seed noise the seeds' part holds already (two-way random effects; at least 0);
- ``ci_low``, ``ci_high`` is ``delta`` +- the half width ``sqrt(t_seeds^2 v_seeds + t_cells^2 v_cells)``: each
  part's standard error times the t quantile of its own degrees of freedom (``n_seeds - 1``, ``n_cells - 1``),
  added in quadrature. Where one part is 0 this is that part's t interval, exact at its level; a single t quantile
  for the sum would either take the seeds' few degrees of freedom for the cells' part as well (far too wide where
  cells vary) or Welch-Satterthwaite's, which with a seed variance on 2 degrees of freedom make the test too
  liberal. ``p_value`` is the level at which the interval just reaches 0: ``p < 1 - confidence`` exactly when the
  interval excludes 0;
- the verdict is the interval's: ``helps`` (``hurts``) when it lies above (below) 0, else ``no detectable
  effect``; ``not tested`` with fewer than two seeds (no spread between seeds to measure);
- ``seeds_needed`` is the fewest seeds with which an effect of this size, with this spread between seeds and
  cells, would have an interval excluding 0 (a planning figure that takes the observed numbers as true; at that
  many seeds such an effect is detected about half the time); empty when more than ``MAX_SEEDS`` would be needed
  (the cells' part alone can hide a small effect at any number of seeds). ``seeds_needed > n_seeds`` on a
  ``no detectable effect`` row says the seeds were too few for an effect of its size.

Not a bootstrap over seeds: with three seeds there are only 10 distinct resamples of them, and a percentile
interval of those spans about the range of the three seed means, which excludes 0 whenever the three agree in
sign (a quarter of the time with no effect at all). Both the metrics are better when higher.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import optimize, stats

from scmix.data import composition
from scmix.evaluation.effect_table import (
    ALL_CELLS,
    COLUMNS,
    HELPS,
    HURTS,
    METRICS,
    NO_EFFECT,
    NOT_TESTED,
    REFERENCE,
    UNLABELLED,
)

log = logging.getLogger("scmix.evaluation.effects")

MAX_SEEDS = 1000  # the most seeds seeds_needed looks at
_P_MIN = 1e-100  # smaller p-values are written as 0


def _half_width(parts: list[tuple[float, float]], alpha):
    """The interval's half width at level ``1 - alpha``: each part's t quantile times its standard error, added in
    quadrature."""
    with np.errstate(over="ignore"):  # an infinite width at a vanishing level is right
        return np.sqrt(sum(stats.t.isf(np.divide(alpha, 2), df) ** 2 * v for v, df in parts))


def t_interval(estimate: float, parts: Iterable[tuple[float, float]], confidence: float) -> tuple[float, float, float]:
    """``(ci_low, ci_high, p_value)`` of ``estimate`` whose variance is the sum of ``parts``, each an estimated
    variance with its degrees of freedom (parts without a degree of freedom are left out): half width
    ``sqrt(sum t_df^2 v)``, each part scaled by the t quantile of its own degrees of freedom. ``p_value`` is the
    level at which that interval just reaches 0, so that ``p < 1 - confidence`` exactly when the interval excludes
    0. With no variance at all the interval is the estimate itself and p is 0 (1 for an estimate of 0)."""
    parts = [(float(v), float(df)) for v, df in parts if df > 0 and np.isfinite(v) and v > 0]
    if not np.isfinite(estimate):
        return float("nan"), float("nan"), float("nan")
    if not parts:
        return estimate, estimate, 0.0 if estimate != 0 else 1.0
    half = float(_half_width(parts, 1 - confidence))
    if estimate == 0:
        p = 1.0
    elif _half_width(parts, _P_MIN) < abs(estimate):
        p = 0.0  # below the smallest p reported
    else:
        p = float(optimize.brentq(lambda a: _half_width(parts, a) - abs(estimate), _P_MIN, 1.0, xtol=_P_MIN,
                                  rtol=1e-12))  # fmt: skip
    return estimate - half, estimate + half, p


def verdict(ci_low: float, ci_high: float) -> str:
    """helps / hurts when the interval lies above / below 0, no detectable effect when it holds 0; not tested
    without an interval."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return NOT_TESTED
    return HELPS if ci_low > 0 else HURTS if ci_high < 0 else NO_EFFECT


def seeds_needed(estimate: float, seed_variance: float, cell_parts: list[tuple[float, float]],
                 confidence: float) -> float:  # fmt: skip
    """The fewest seeds (2 to ``MAX_SEEDS``) with which ``estimate``, with per-seed variance ``seed_variance`` and
    the cells' parts as they are, has a :func:`t_interval` excluding 0; NaN when none does."""
    if not (np.isfinite(estimate) and np.isfinite(seed_variance)) or estimate == 0:
        return float("nan")
    n = np.arange(2, MAX_SEEDS + 1, dtype=float)
    cells = [(float(v), float(df)) for v, df in cell_parts if df > 0 and np.isfinite(v) and v > 0]
    half = _half_width([(seed_variance / n, n - 1), *cells], 1 - confidence)
    found = np.flatnonzero(abs(estimate) > half)
    return float(n[found[0]]) if len(found) else float("nan")


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # a row without a finite value is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _group_means(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row of ``x``, the mean of its values where ``mask`` holds (NaN where it holds nowhere)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, x, 0.0).sum(axis=1) / mask.sum(axis=1)


def cell_part(x: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """The eval cells' part of the variance of the mean over seeds of the per-seed means of ``x`` (seeds x cells)
    over the cells in ``mask``, with its degrees of freedom: the spread of the cells' own means (over their seeds)
    beyond the cell-by-seed noise that the seeds' part holds already; at least 0. Two-way random effects, seed and
    cell: the variance of the cells' means over their number, less the residual mean square of the seeds x cells
    table (after seed and cell means) over the cells' seeds and their number."""
    mask = mask & np.isfinite(x)
    cells = mask.any(axis=0)
    x, mask = x[:, cells], mask[:, cells]
    n_cells, n = x.shape[1], int(mask.sum())
    if n_cells < 2:
        return 0.0, 0.0
    seed_means, cell_means = _group_means(x, mask), _group_means(x.T, mask.T)
    per_cell_seeds = mask.sum(axis=0)
    cell_variance = float(np.var(cell_means, ddof=1)) / n_cells
    seeds = np.isfinite(seed_means)
    df_residual = n - int(seeds.sum()) - n_cells + 1
    if df_residual > 0:
        grand = float(np.mean(seed_means[seeds]))
        residual = np.where(mask, x - np.nan_to_num(seed_means)[:, None] - cell_means[None, :] + grand, 0.0)
        noise = float((residual**2).sum()) / df_residual * float(np.mean(1 / per_cell_seeds)) / n_cells
    else:  # one seed, or one value per cell: no cell-by-seed noise to tell apart
        noise = 0.0
    return max(cell_variance - noise, 0.0), n_cells - 1.0


def seed_effect(per_seed: np.ndarray, cell_parts: list[tuple[float, float]], confidence: float) -> dict:
    """``delta`` (the mean of the finite per-seed values), its interval, p-value, verdict and seeds needed, the
    variance being the seeds' part plus ``cell_parts`` (see the module docstring)."""
    x = np.asarray(per_seed, dtype=float)
    x = x[np.isfinite(x)]
    nan = float("nan")
    estimate = float(x.mean()) if len(x) else nan
    if len(x) < 2:
        return {"delta": estimate, "ci_low": nan, "ci_high": nan, "p_value": nan, "verdict": NOT_TESTED,
                "seeds_needed": nan}  # fmt: skip
    seed_variance = float(np.var(x, ddof=1))
    lo, hi, p = t_interval(estimate, [(seed_variance / len(x), len(x) - 1), *cell_parts], confidence)
    return {"delta": estimate, "ci_low": lo, "ci_high": hi, "p_value": p, "verdict": verdict(lo, hi),
            "seeds_needed": seeds_needed(estimate, seed_variance, cell_parts, confidence)}  # fmt: skip


def paired_effect(point: np.ndarray, reference: np.ndarray, *, confidence: float = 0.95) -> dict:
    """The effect of ``point`` against ``reference`` (both seeds x cells of one metric, the same seeds and cells in
    the same order; NaN where missing): see the module docstring."""
    d = np.asarray(point, dtype=float) - np.asarray(reference, dtype=float)
    return seed_effect(_nanmean(d, axis=1), [cell_part(d, np.isfinite(d))], confidence)


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
                        min_cells_per_type: int = 50) -> pd.DataFrame:  # fmt: skip
    """Every sweep point against its reference, per model x eval set x cell group x metric.

    ``cells``: the evaluate rule's per-cell tables of the sweeps' mixes, concatenated (model, mix, seed, eval_set,
    cell_id, cell_type and the metrics); ``points``: :func:`scmix.data.composition.sweep_points`. A metric without a
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
                    per_seed = _nanmean(a, axis=1)
                    row = {"model": model, "eval_set": eval_set, "cell_type": group, "metric": metric,
                           **{k: p[k] for k in ("sweep", "kind", "added", "share", "total_cells", "mix", "reference")},
                           "n_seeds": len(seeds), "n_cells": n_cells, "mean": float(np.nanmean(per_seed)),
                           "seed_sd": float(np.std(per_seed, ddof=1)) if len(seeds) > 1 else float("nan"),
                           "reference_mean": float(np.nanmean(_nanmean(r, axis=1)))}  # fmt: skip
                    if p["mix"] == p["reference"]:
                        row.update(delta=0.0, ci_low=0.0, ci_high=0.0, p_value=float("nan"), verdict=REFERENCE,
                                   seeds_needed=float("nan"))  # fmt: skip
                    else:
                        row.update(paired_effect(a, r, confidence=confidence))
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
                label_map: Mapping[str, str] | None = None, confidence: float = 0.95,
                min_cells: int = 50) -> pd.DataFrame:  # fmt: skip
    """Per model x mix x eval set: the per-cell r of eval cells whose (coarse) cell type is absent from the mix's
    training cells of that seed (``training_types``, fine labels; both through ``label_map``) (unseen) against
    those whose type is there (seen). ``delta`` is unseen - seen (per seed, then the mean over seeds), with the
    interval, p-value and seeds needed of :func:`seed_effect` (the cells' part of the variance: each group's, from
    its cells' means over the seeds). Groups need ``min_cells`` cells in every seed; otherwise the row says so
    (verdict not tested)."""
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
               "verdict": NOT_TESTED, "seeds_needed": nan}  # fmt: skip
        if min(n_seen, n_unseen) >= min_cells:
            mean_seen, mean_unseen = _group_means(x, seen & ok), _group_means(x, unseen & ok)
            cell_parts = [cell_part(x, group & ok) for group in (unseen, seen)]
            effect = seed_effect(mean_unseen - mean_seen, cell_parts, confidence)
            row.update(effect, seen_mean=float(mean_seen.mean()), unseen_mean=float(mean_unseen.mean()),
                       verdict={HELPS: "better", HURTS: "worse"}.get(effect["verdict"], effect["verdict"]))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def _numbers(row, confidence: float) -> str:
    seeds = f"{int(row['n_seeds'])} seed{'s' if row['n_seeds'] != 1 else ''}"
    if not np.isfinite(row["p_value"]):
        return f"{row['delta']:+.3f}, {seeds}, not tested"
    return (f"{row['delta']:+.3f}, {100 * confidence:g} % CI {row['ci_low']:+.3f} to {row['ci_high']:+.3f}, "
            f"p = {row['p_value']:.2g}, {seeds}{_too_few(row)}")  # fmt: skip


def _too_few(row) -> str:
    """What it would take to detect an effect of a no-effect row's size: nothing for other rows."""
    if row["verdict"] != NO_EFFECT or row["delta"] == 0:
        return ""
    needed = row.get("seeds_needed", float("nan"))
    if not np.isfinite(needed):
        return f"; too small to detect with up to {MAX_SEEDS:,} seeds"
    if needed <= row["n_seeds"]:
        return ""
    return f"; too few seeds for an effect of this size, which would need {int(needed)}"


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
