"""Composition sweeps: config entries (``mix_sweeps``) that expand into ordinary named mixes.

A *share* sweep ``{base, added, shares, total_cells}`` is, for each added dataset and each share s, the mix of
``total_cells`` cells with a fraction s of the added dataset and 1 - s of the base; share 0 is the base alone, one
mix that every added dataset's line shares. A *size* sweep ``{datasets, sizes}`` is one recipe (``datasets`` as
under ``mixes``) at each ``total_cells`` of ``sizes``. Names are derived:

- share sweep ``pbmc``: ``pbmc-s0`` (base alone), ``pbmc+kang-s25`` (25 % Kang), ``pbmc+kang-s12p5`` (12.5 %);
- size sweep ``scaling``: ``scaling-n1000``.

Each point's *reference* is the point its effect is measured against: the smallest share of its added dataset's
line (share 0, when the sweep has it), or the smallest size.

The design is paired. At one seed every point draws each dataset from the same seeded permutation of its training
cells (:func:`scmix.data.mix.draw`), taking cells from its start: the base cells of a larger share are a subset of the
base cells of a smaller one, the added cells of a smaller share a subset of those of a larger one, and the cells of a
smaller size a subset of those of a larger one. Points of one seed differ only by the cells added or removed, never
by another draw of the cells they have in common; their models start from the same seed, and all points are scored
on the same held-out cells, so effects are paired by seed and by eval cell.

Standard library only: the workflow expands the sweeps while it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping

SHARE = "share"
SIZE = "size"
# the figure of every share sweep together, beside one figure per sweep: no sweep may have its name
HEATMAP = "effects_heatmap"


class SweepError(ValueError):
    """A sweep that cannot expand; the message starts with ``config: mix_sweeps.<sweep>``."""


def share_label(share: float) -> str:
    """``s`` and the share in percent, a ``p`` for the decimal point: 0 -> s0, 0.25 -> s25, 0.125 -> s12p5."""
    return "s" + f"{100 * float(share):.6g}".replace(".", "p")


def _kind(sweep: str, spec: Mapping) -> str:
    kinds = [k for k, key in ((SHARE, "shares"), (SIZE, "sizes")) if key in spec]
    if len(kinds) != 1:
        raise SweepError(f"config: mix_sweeps.{sweep} needs exactly one of shares (a share sweep) or sizes "
                         "(a size sweep)")  # fmt: skip
    return kinds[0]


def _share_points(sweep: str, spec: Mapping) -> list[dict]:
    base, added, total = spec["base"], list(spec["added"]), int(spec["total_cells"])
    shares = sorted(float(s) for s in spec["shares"])
    if base in added:
        raise SweepError(f"config: mix_sweeps.{sweep}.added names the base '{base}'; list only datasets added to it")
    points = []
    for d in added:
        reference = None
        for s in shares:
            if s == 0:
                name, recipe = f"{sweep}-{share_label(0)}", {base: 1.0}
            elif s == 1:
                name, recipe = f"{sweep}+{d}-{share_label(1)}", {d: 1.0}
            else:
                name, recipe = f"{sweep}+{d}-{share_label(s)}", {base: round(1 - s, 12), d: s}
            reference = reference or name
            points.append({"mix": name, "sweep": sweep, "kind": SHARE, "base": base, "added": d, "share": s,
                           "total_cells": total, "reference": reference,
                           "recipe": {"total_cells": total, "datasets": recipe}})  # fmt: skip
    return points


def _size_points(sweep: str, spec: Mapping) -> list[dict]:
    sizes = sorted(int(n) for n in spec["sizes"])
    datasets = dict(spec["datasets"])
    points = []
    for n in sizes:
        recipe = {"total_cells": n, "datasets": datasets}
        if "replace" in spec:
            recipe["replace"] = bool(spec["replace"])
        points.append({"mix": f"{sweep}-n{n}", "sweep": sweep, "kind": SIZE, "base": None, "added": None,
                       "share": None, "total_cells": n, "reference": f"{sweep}-n{sizes[0]}",
                       "recipe": recipe})  # fmt: skip
    return points


def sweep_points(sweeps: Mapping | None) -> list[dict]:
    """Every point of every sweep, in config order: one dict per (added dataset, share) or size, with its mix name,
    recipe and reference. A share-0 point appears once per added dataset (one mix)."""
    points = []
    for sweep, spec in (sweeps or {}).items():
        if sweep == HEATMAP:
            raise SweepError(f"config: mix_sweeps.{sweep}: the name is the effects heatmap's; rename the sweep")
        kind = _kind(sweep, spec)
        values = spec["shares"] if kind == SHARE else spec["sizes"]
        if len(set(map(float, values))) != len(values) or len(values) < 2:
            raise SweepError(f"config: mix_sweeps.{sweep}.{kind}s needs at least two different values, got {values}")
        points += _share_points(sweep, spec) if kind == SHARE else _size_points(sweep, spec)
    return points


def all_mixes(config: Mapping) -> dict[str, dict]:
    """Every mix of a study by name: the ``mixes`` section, then each sweep's points. A name given twice fails."""
    mixes = {name: dict(recipe) for name, recipe in (config.get("mixes") or {}).items()}
    swept: dict[str, str] = {}
    for p in sweep_points(config.get("mix_sweeps")):
        name = p["mix"]
        if name in mixes and swept.get(name) != p["sweep"]:
            where = f"mix_sweeps.{swept[name]}" if name in swept else "mixes"
            raise SweepError(f"config: mix_sweeps.{p['sweep']} expands to the mix '{name}', which {where} already "
                             "names; rename the sweep or that mix")  # fmt: skip
        if name in mixes and mixes[name] != p["recipe"]:  # two shares with one label (e.g. 0.1234561, 0.1234562)
            raise SweepError(f"config: mix_sweeps.{p['sweep']} has two shares that round to the one name '{name}'")
        mixes[name] = p["recipe"]
        swept[name] = p["sweep"]
    return mixes
