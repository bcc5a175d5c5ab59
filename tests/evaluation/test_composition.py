"""Composition sweeps: their expansion into named mixes, the paired draws, and the statistics of their effects."""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from scmix import study
from scmix.data import composition
from scmix.data.mix import make_mix
from scmix.evaluation import effects

REPO = Path(__file__).resolve().parents[2]
SCHEMA = str(REPO / "schemas" / "config.schema.yaml")
SWEEPS = {
    "pbmc": {"base": "pbmc3k", "added": ["kang", "screen"], "shares": [0.5, 0, 0.125], "total_cells": 1000},
    "scaling": {"datasets": {"pbmc3k": 0.5, "kang": 0.5}, "sizes": [1000, 250]},
}


def test_sweeps_expand_to_named_mixes_with_their_references():
    config = {"mixes": {"mine": {"total_cells": 10, "datasets": {"kang": 1.0}}}, "mix_sweeps": SWEEPS}
    mixes = composition.all_mixes(config)
    assert list(mixes) == ["mine", "pbmc-s0", "pbmc+kang-s12p5", "pbmc+kang-s50", "pbmc+screen-s12p5",
                           "pbmc+screen-s50", "scaling-n250", "scaling-n1000"]  # fmt: skip
    assert mixes["pbmc-s0"] == {"total_cells": 1000, "datasets": {"pbmc3k": 1.0}}
    assert mixes["pbmc+kang-s12p5"] == {"total_cells": 1000, "datasets": {"pbmc3k": 0.875, "kang": 0.125}}
    assert mixes["scaling-n250"] == {"total_cells": 250, "datasets": {"pbmc3k": 0.5, "kang": 0.5}}
    points = composition.sweep_points(SWEEPS)
    assert len(points) == 8  # share 0 once per added dataset's line: one mix, two points
    assert {p["reference"] for p in points if p["sweep"] == "pbmc"} == {"pbmc-s0"}
    assert {p["reference"] for p in points if p["sweep"] == "scaling"} == {"scaling-n250"}
    # without share 0, each line is measured against its own smallest share
    lines = composition.sweep_points({"d": {"base": "a", "added": ["b", "c"], "shares": [0.5, 0.2], "total_cells": 9}})
    assert {(p["mix"], p["reference"]) for p in lines} == {("d+b-s20", "d+b-s20"), ("d+b-s50", "d+b-s20"),
                                                            ("d+c-s20", "d+c-s20"), ("d+c-s50", "d+c-s20")}  # fmt: skip
    assert composition.share_label(1) == "s100" and composition.share_label(0.333) == "s33p3"


def test_every_expanded_name_is_valid_and_the_config_validates():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["mix_sweeps"] = {"dose": {"base": "blood_base", "added": ["tumour"], "shares": [0, 0.1, 1],
                                     "total_cells": 300}}  # fmt: skip
    validate(config, SCHEMA)
    specs = study.model_specs(config)
    study.check_config(config, specs)
    assert {"dose-s0", "dose+tumour-s10", "dose+tumour-s100"} <= set(study.mixes(config))
    assert study.mixes(config)["dose+tumour-s100"]["datasets"] == {"tumour": 1.0}


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"base": "blood_base", "added": ["tumour"], "shares": [0, 2], "total_cells": 9}, "shares.1: 2 is greater"),
        ({"base": "blood_base", "added": ["tumour"], "shares": [0.5], "total_cells": 9}, "shares"),
        ({"base": "blood_base", "added": ["tumour"], "shares": [0, 0.5]}, "total_cells"),
        ({"base": "blood_base", "added": ["tumour"], "sizes": [1, 2], "shares": [0, 0.5], "total_cells": 9}, "dose"),
        ({"datasets": {"blood_base": 1.0}, "sizes": [100, 100]}, "sizes"),
    ],
)
def test_a_malformed_sweep_fails_validation_naming_it(sweep, message):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["mix_sweeps"] = {"dose": sweep}
    with pytest.raises(WorkflowError) as err:
        validate(config, SCHEMA)
    said = study.schema_error_message(err.value.__context__)  # the workflow's one line
    assert said.startswith("config: mix_sweeps.dose") and message in said, said


@pytest.mark.parametrize("key", ["n_boot", "seed"])
def test_the_bootstrap_settings_are_gone_and_refused_by_name(key):
    # the effects' interval is no bootstrap: a config that sets its replicates or seed is told, not ignored
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.setdefault("evaluation", {})["composition"] = {key: 2000}
    with pytest.raises(WorkflowError) as err:
        validate(config, SCHEMA)
    said = study.schema_error_message(err.value.__context__)
    assert said == f"config: evaluation.composition: Additional properties are not allowed ('{key}' was unexpected)"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["mix_sweeps"]["dose"].update(base="blood_bsae"), "mix_sweeps.dose.base names 'blood_bsae'"),
        (lambda c: c["mix_sweeps"]["dose"].update(added=["blood_base"]), "names the base"),
        (lambda c: c["mixes"].update({"dose-s0": {"total_cells": 5, "datasets": {"tumour": 1.0}}}),
         "expands to the mix 'dose-s0', which mixes already names"),
        (lambda c: c["mix_sweeps"]["dose"].update(shares=[0, 0.1234561, 0.1234562]), "round to the one name"),
        (lambda c: c.update(mixes={}, mix_sweeps={}), "the study has no mix"),
        (lambda c: c["mix_sweeps"].update(effects_heatmap=c["mix_sweeps"]["dose"]), "the effects heatmap's"),
    ],
)  # fmt: skip
def test_sweep_cross_references_fail_with_one_message(edit, message):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["mix_sweeps"] = {"dose": {"base": "blood_base", "added": ["tumour"], "shares": [0, 0.5],
                                     "total_cells": 300}}  # fmt: skip
    edit(config)
    with pytest.raises(study.ConfigError, match=message):
        study.check_config(config, study.model_specs(config))


def test_dry_run_shows_the_expanded_mixes(tmp_path):
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config["mixes"] = {}
    config["mix_sweeps"] = {"dose": {"base": "blood", "added": ["tumour"], "shares": [0, 0.5], "total_cells": 200},
                            "size": {"datasets": {"blood": 1.0}, "sizes": [100, 200]}}  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(path)], capture_output=True, text=True)  # fmt: skip
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    for mix in ("dose-s0", "dose+tumour-s50", "size-n100", "size-n200"):
        assert f"results/mixes/{mix}/seed0.h5ad" in out
    assert "results/summary/composition_effects.tsv" in out
    assert "results/summary/composition/dose.png" in out and "results/summary/composition/size.png" in out
    assert "results/summary/composition/effects_heatmap.png" in out


def test_points_of_one_seed_are_paired_nested_draws(blood, universe):
    from scmix.data.simulate import simulate_dataset

    other = simulate_dataset("other", {"n_cells": 500, "donors": 2, "cell_types": {"X": 1.0}}, universe)
    parts = {"blood": blood, "other": other}
    sweep = {"d": {"base": "blood", "added": ["other"], "shares": [0, 0.25, 0.5], "total_cells": 400}}
    mixes = composition.all_mixes({"mix_sweeps": sweep})
    drawn = {}
    for name, recipe in mixes.items():
        used = {d: parts[d] for d in recipe["datasets"]}
        m = make_mix(name, recipe, used, seed=3, match_on="symbols", n_top_genes=None, min_shared=10)
        drawn[name] = {d: set(m.obs_names[m.obs["dataset"] == d]) for d in ("blood", "other")}
    s0, s25, s50 = drawn["d-s0"], drawn["d+other-s25"], drawn["d+other-s50"]
    assert (len(s0["blood"]), len(s25["blood"]), len(s50["blood"])) == (400, 300, 200)
    assert s50["blood"] < s25["blood"] < s0["blood"]  # the base cells of a larger share: a subset
    assert s25["other"] < s50["other"] and len(s25["other"]) == 100
    again = make_mix("d-s0", mixes["d-s0"], {"blood": blood}, seed=4, match_on="symbols", n_top_genes=None,
                     min_shared=10)  # fmt: skip
    assert set(again.obs_names) != s0["blood"]  # another seed, another draw


# ---------------------------------------------------------------------------------------------------------------
# the statistics


def test_p_value_and_interval_are_the_paired_t_test_across_seeds_by_hand():
    # every cell of a seed moves alike, so the cells add no spread: the plain t-test of the seed means 0.1, 0.2, 0.3.
    # t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3; with 2 degrees of freedom the two-sided p is 1 - t / sqrt(t^2 + 2), and
    # the interval 0.2 +- t_{2, 0.975} 0.1 / sqrt 3 (t_{2, 0.975} = 4.302653)
    d = np.repeat([[0.1], [0.2], [0.3]], 5, axis=1)
    out = effects.paired_effect(d, np.zeros_like(d))
    t = 2 * np.sqrt(3)
    assert out["p_value"] == pytest.approx(1 - t / np.sqrt(t**2 + 2))
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    # with the same spread, 4 seeds would give t_{3, 0.975} 0.1 / sqrt 4 = 0.159 < 0.2
    assert out["verdict"] == effects.NO_EFFECT and out["seeds_needed"] == 4
    assert effects.paired_effect(d[:1], np.zeros((1, 5)))["verdict"] == effects.NOT_TESTED  # one seed: no test
    same = effects.paired_effect(np.full((2, 4), 0.2), np.zeros((2, 4)))  # no spread at all
    assert same["p_value"] == 0.0 and same["ci_low"] == same["ci_high"] == 0.2 and same["verdict"] == effects.HELPS
    assert effects.paired_effect(np.zeros((3, 4)), np.zeros((3, 4)))["p_value"] == 1.0


def test_the_cells_spread_widens_the_interval_by_hand():
    # three seeds, alike; the cells differ: the seeds' part is 0, and the cells' part var(cell means) / n_cells on
    # n_cells - 1 degrees of freedom, the one-sample t interval of the cells' means
    cell = np.array([0.1, 0.3, 0.2, 0.6])
    out = effects.paired_effect(np.vstack([cell] * 3), np.zeros((3, 4)))
    assert out["ci_high"] - out["delta"] == pytest.approx(stats.t.ppf(0.975, 3) * np.std(cell, ddof=1) / 2)
    assert out["p_value"] == pytest.approx(stats.ttest_1samp(cell, 0).pvalue)
    # both parts: t quantiles of their own degrees of freedom, in quadrature; the cell-by-seed noise (here the
    # seeds' offsets are all there is beyond the cells' own means) is not counted twice
    d = np.vstack([cell + 0.05, cell - 0.05, cell + 0.0])
    out = effects.paired_effect(d, np.zeros_like(d))
    v_seeds, v_cells = np.var([0.05, -0.05, 0.0], ddof=1) / 3, np.var(cell, ddof=1) / 4
    half = np.sqrt(stats.t.ppf(0.975, 2) ** 2 * v_seeds + stats.t.ppf(0.975, 3) ** 2 * v_cells)
    assert out["ci_high"] - out["delta"] == pytest.approx(half)
    assert effects.t_interval(out["delta"], [(v_seeds, 2), (v_cells, 3)], 1 - out["p_value"])[0] == pytest.approx(0)


def test_verdict_is_helps_or_hurts_exactly_when_the_interval_excludes_0_on_that_side():
    rng = np.random.default_rng(33)
    seen = set()
    for _ in range(400):
        n_seeds, n_cells = rng.integers(2, 6), rng.integers(2, 40)
        spread = rng.choice([0.001, 0.01, 0.05])
        d = rng.normal(rng.normal(0, 0.02), spread, (n_seeds, 1)) + rng.normal(0, rng.choice([0.01, 0.1]),
                                                                               (n_seeds, n_cells))  # fmt: skip
        d[rng.random(d.shape) < 0.1] = np.nan  # missing values
        confidence = rng.choice([0.8, 0.95, 0.99])
        out = effects.paired_effect(d, np.zeros_like(d), confidence=confidence)
        v = out["verdict"]
        seen.add(v)
        assert (v == effects.HELPS) == (out["ci_low"] > 0) and (v == effects.HURTS) == (out["ci_high"] < 0)
        assert (v in (effects.HELPS, effects.HURTS)) == (out["p_value"] < 1 - confidence)
        assert out["ci_low"] <= out["delta"] <= out["ci_high"]
        needed = out["seeds_needed"]  # a detected effect needs no more seeds than it has; an undetected one more
        assert (needed <= n_seeds) if v != effects.NO_EFFECT else not (needed <= n_seeds)
    assert seen == {effects.HELPS, effects.HURTS, effects.NO_EFFECT}


def test_a_consistent_effect_hidden_by_two_seeds_says_how_many_seeds_it_needs():
    # the row: an effect of -0.009 whose seeds spread (p = 0.1 with 3 seeds): no detectable effect, and
    # a row that says more seeds would detect an effect of this size
    d = np.array([[-0.004], [-0.009], [-0.014]]) + np.zeros((3, 200))
    out = effects.paired_effect(d, np.zeros_like(d))
    assert out["verdict"] == effects.NO_EFFECT and out["ci_low"] < 0 < out["ci_high"]
    assert out["seeds_needed"] == 4
    row = {**out, "n_seeds": 3}
    assert "too few seeds for an effect of this size, which would need 4" in effects._numbers(row, 0.95)
    tiny = effects.paired_effect(d + 0.009, np.zeros_like(d))  # an effect of ~0: no number of seeds finds it
    assert tiny["verdict"] == effects.NO_EFFECT and np.isnan(tiny["seeds_needed"])
    assert "too small to detect with up to 1,000 seeds" in effects._numbers({**tiny, "n_seeds": 3}, 0.95)


def test_missing_values_are_left_out_not_counted_as_zero():
    point = np.array([[1.0, np.nan, 3.0], [2.0, 2.0, np.nan]])
    out = effects.paired_effect(point, np.zeros_like(point))
    assert out["delta"] == pytest.approx((2.0 + 2.0) / 2)  # seed means 2 and 2


def _simulated_cells(rng, n_seeds=3, n_cells=300, shift=0.0, seed_sd=0.01, cell_sd=0.05):
    """Per-cell r of a point and its reference: cells share their difficulty; each training (seed) its own
    offset; ``shift`` is the planted effect of the point."""
    difficulty = rng.normal(0.7, 0.1, n_cells)

    def trained(offset):
        return difficulty + offset + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, cell_sd, (n_seeds, n_cells))

    return trained(shift), trained(0.0)


def test_null_effect_is_no_detectable_effect_in_95_percent_of_repetitions():
    # the same dataset drawn twice: point and reference are two draws of one distribution. The cells do not differ
    # beyond the cell-by-seed noise, so the interval is about the seed means' t interval, exact at level 5 %: 95 %
    # is the expected share of "no detectable effect"; 2,000 repetitions measure it to +- 1 % (two standard errors)
    rng = np.random.default_rng(2026)
    verdicts = [effects.paired_effect(*_simulated_cells(rng))["verdict"] for _ in range(2000)]
    no_effect = verdicts.count(effects.NO_EFFECT) / len(verdicts)
    assert no_effect >= 0.95 - 2 * np.sqrt(0.05 * 0.95 / len(verdicts)), no_effect
    assert abs(verdicts.count(effects.HELPS) - verdicts.count(effects.HURTS)) < 0.03 * len(verdicts)  # no bias


def test_a_planted_effect_is_detected_in_the_right_direction():
    rng = np.random.default_rng(7)
    helps = [effects.paired_effect(*_simulated_cells(rng, shift=0.08))["verdict"]
             for _ in range(50)]  # fmt: skip
    hurts = [effects.paired_effect(*_simulated_cells(rng, shift=-0.08))["verdict"]
             for _ in range(50)]  # fmt: skip
    assert helps.count(effects.HELPS) >= 45 and effects.HURTS not in helps
    assert hurts.count(effects.HURTS) >= 45 and effects.HELPS not in hurts


def _cells_table(points, n_seeds=3, shift=None, seed=0):
    """Per-cell tables of every mix of ``points`` on two eval sets (the evaluate rule's columns)."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    rows = []
    for eval_set, n in (("a", 120), ("b", 80)):
        types = np.where(np.arange(n) < 60, "T", "B")
        for mix in dict.fromkeys(p["mix"] for p in points):
            for s in range(n_seeds):
                r = 0.6 + shift.get((mix, eval_set), 0.0) + rng.normal(0, 0.02, n)
                ll = -50 + rng.normal(0, 1, n)
                rows.append(pd.DataFrame({"model": "m", "mix": mix, "seed": s, "eval_set": eval_set,
                                          "cell_id": [f"c{i}" for i in range(n)], "cell_type": types,
                                          "pearson": r, "marginal_ll": ll}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


POINTS = composition.sweep_points({"d": {"base": "a", "added": ["b"], "shares": [0, 0.25, 0.5], "total_cells": 9}})


def test_effects_table_rows_and_numbers():
    cells = _cells_table(POINTS, shift={("d+b-s50", "b"): 0.2})
    table = effects.composition_effects(cells, POINTS, min_cells_per_type=50)
    # eval set a: all, T (60), B (60); eval set b: all, T (60) (B has 20 cells: no row of its own)
    groups = table.groupby("eval_set")["cell_type"].unique().map(sorted).to_dict()
    assert groups == {"a": ["B", "T", "all"], "b": ["T", "all"]}
    assert len(table) == 5 * 2 * 3  # groups x metrics x points
    ref = table[table["mix"] == "d-s0"]
    assert (ref["verdict"] == effects.REFERENCE).all() and (ref["delta"] == 0).all()
    row = table[(table["mix"] == "d+b-s50") & (table["eval_set"] == "b") & (table["cell_type"] == "all")
                & (table["metric"] == "pearson")].iloc[0]  # fmt: skip
    on_b = cells[cells["eval_set"] == "b"]
    by_hand = (on_b[on_b["mix"] == "d+b-s50"].groupby("seed")["pearson"].mean()
               - on_b[on_b["mix"] == "d-s0"].groupby("seed")["pearson"].mean())  # fmt: skip
    assert row["delta"] == pytest.approx(by_hand.mean())
    assert row["ci_low"] < row["delta"] < row["ci_high"] and row["verdict"] == effects.HELPS
    assert row["n_seeds"] == 3 and row["n_cells"] == 80 and row["share"] == 0.5 and row["added"] == "b"
    other = table[(table["mix"] == "d+b-s25") & (table["metric"] == "pearson") & (table["cell_type"] == "all")]
    assert set(other["verdict"]) == {effects.NO_EFFECT}


def test_a_rows_interval_does_not_change_when_another_model_is_added():
    cells = _cells_table(POINTS, shift={("d+b-s50", "b"): 0.05})
    alone = effects.composition_effects(cells, POINTS)
    more = pd.concat([cells.assign(model="extra"), cells], ignore_index=True)
    both = effects.composition_effects(more, POINTS)
    pd.testing.assert_frame_equal(both[both["model"] == "m"].reset_index(drop=True), alone)


def test_one_seed_is_not_tested():
    cells = _cells_table(POINTS, n_seeds=1, shift={("d+b-s50", "b"): 0.3})
    table = effects.composition_effects(cells, POINTS)
    tested = table[table["verdict"] != effects.REFERENCE]
    assert set(tested["verdict"]) == {effects.NOT_TESTED} and tested["seed_sd"].isna().all()


def test_seen_unseen_and_the_claims_sentences():
    cells = _cells_table(POINTS, shift={("d+b-s50", "b"): 0.2, ("d+b-s50", "a"): -0.1})
    # B cells reconstruct worse than T cells on eval set a
    cells.loc[(cells["eval_set"] == "a") & (cells["cell_type"] == "B"), "pearson"] -= 0.1
    training = {(m, s): {"t cells"} for m in ("d-s0", "d+b-s25", "d+b-s50") for s in range(3)}
    label_map = {"T": "t cells", "B": "b cells"}
    unseen = effects.seen_unseen(cells, training, ["d-s0"], label_map=label_map, min_cells=50)
    a = unseen[unseen["eval_set"] == "a"].iloc[0]
    assert a["verdict"] == "worse" and a["delta"] == pytest.approx(-0.1, abs=0.01) and a["unseen_types"] == "b cells"
    b = unseen[unseen["eval_set"] == "b"].iloc[0]
    assert b["verdict"] == effects.NOT_TESTED and b["n_unseen"] == 20  # 20 B cells: too few to compare
    table = effects.composition_effects(cells, POINTS)
    claims = effects.claims(table, unseen, POINTS)
    assert list(claims["claim"]) == ["unseen_cell_types", "unseen_cell_types", "own_eval_set", "base_eval_set"]
    own = claims[claims["claim"] == "own_eval_set"].iloc[0]
    assert own["verdict"] == effects.HELPS and own["mix"] == "d+b-s50"
    assert own["sentence"].startswith("m: adding b at 50 % of the training cells (d+b-s50 against d-s0)")
    assert own["sentence"].endswith(": it helps.")
    assert claims[claims["claim"] == "base_eval_set"].iloc[0]["sentence"].endswith(": it hurts.")
    assert "too few cells to compare (20 unseen, 60 seen)" in claims.iloc[1]["sentence"]
    assert "reconstructed worse than cells of seen types" in claims.iloc[0]["sentence"]


def test_transfer_claims_name_the_third_eval_set():
    points = composition.sweep_points({"d": {"base": "a", "added": ["c"], "shares": [0, 0.5], "total_cells": 9}})
    cells = _cells_table(points)
    table = effects.composition_effects(cells, points)
    claims = effects.claims(table, pd.DataFrame(columns=["mix"]), points)
    assert set(claims["claim"]) == {"base_eval_set", "transfer"}  # c is no eval set here
    transfer = claims[claims["claim"] == "transfer"].iloc[0]
    assert transfer["eval_set"] == "b" and "a third eval set, b," in transfer["sentence"]


def test_copy_of_config_keeps_sweeps_untouched():
    config = {"mix_sweeps": copy.deepcopy(SWEEPS)}
    composition.all_mixes(config)
    assert config["mix_sweeps"] == SWEEPS  # expansion never edits the config


@pytest.mark.e2e
def test_a_share_sweep_runs_end_to_end_to_effects_claims_and_figures(tmp_path):
    from snakerun import snakemake

    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config.update(seeds=[0, 1, 2], mixes={})
    config["models"] = {"ldvae": config["models"]["ldvae"]}
    config["mix_sweeps"] = {"dose": {"base": "blood", "added": ["tumour"], "shares": [0, 0.5], "total_cells": 200}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    targets = ["results/summary/composition_effects.tsv", "results/summary/composition/dose.png",
               "results/summary/composition/effects_heatmap.png"]  # fmt: skip
    res = snakemake(tmp_path, "--cores", "2", *targets, config=path)  # targets after an option: not config files
    assert res.returncode == 0, res.stderr[-4000:]
    table = pd.read_csv(tmp_path / targets[0], sep="\t")
    assert set(table["mix"]) == {"dose-s0", "dose+tumour-s50"} and set(table["eval_set"]) == {"blood", "tumour"}
    assert set(table["metric"]) == {"pearson", "marginal_ll"} and (table["n_seeds"] == 3).all()
    top = table[(table["mix"] == "dose+tumour-s50") & (table["eval_set"] == "tumour")
                & (table["cell_type"] == "all") & (table["metric"] == "pearson")].iloc[0]  # fmt: skip

    # the per-seed differences of the evaluate rule's own tables give the same delta
    def mean_r(mix):
        return np.mean([pd.read_csv(tmp_path / f"results/eval/ldvae/{mix}/seed{s}/tumour.cells.tsv", sep="\t")
                        ["pearson"].mean() for s in range(3)])  # fmt: skip

    assert top["delta"] == pytest.approx(mean_r("dose+tumour-s50") - mean_r("dose-s0"))
    assert top["ci_low"] <= top["delta"] <= top["ci_high"] and 0 <= top["p_value"] <= 1
    claims = pd.read_csv(tmp_path / "results/summary/composition_claims.tsv", sep="\t")
    assert set(claims["claim"]) == {"unseen_cell_types", "own_eval_set", "base_eval_set"}
    assert claims["sentence"].str.len().min() > 40
    # Malignant cells are absent from the base: unseen on the tumour eval set
    unseen = pd.read_csv(tmp_path / "results/summary/seen_unseen.tsv", sep="\t")
    row = unseen[(unseen["mix"] == "dose-s0") & (unseen["eval_set"] == "tumour")].iloc[0]
    assert row["unseen_types"] == "Malignant" and row["n_unseen"] > 0
    from matplotlib.image import imread

    assert imread(tmp_path / targets[1]).shape[0] > 200
