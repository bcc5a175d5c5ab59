import numpy as np
import pytest

from scmix.split import split_heldout


def test_split_is_disjoint_sized_stratified_and_deterministic(blood):
    train, held = split_heldout(blood, 0.25, seed=0)
    assert set(train.obs_names).isdisjoint(held.obs_names)
    assert train.n_obs + held.n_obs == blood.n_obs
    assert held.n_obs == pytest.approx(0.25 * blood.n_obs, abs=1)
    frac = held.obs["cell_type"].value_counts(normalize=True)
    full = blood.obs["cell_type"].value_counts(normalize=True)
    assert np.allclose(frac[full.index], full, atol=0.02)
    again, _ = split_heldout(blood, 0.25, seed=0)
    assert list(again.obs_names) == list(train.obs_names)
    other, _ = split_heldout(blood, 0.25, seed=1)
    assert list(other.obs_names) != list(train.obs_names)


def test_split_rejects_bad_fraction(blood):
    with pytest.raises(ValueError, match="eval_fraction"):
        split_heldout(blood, 1.0, seed=0)


def test_split_on_real_pbmc3k_keeps_every_cell_type_on_both_sides(pbmc3k):
    train, held = split_heldout(pbmc3k, 0.2, seed=0)
    assert held.n_obs == round(0.2 * 2638)
    assert set(held.obs["cell_type"]) == set(train.obs["cell_type"]) == set(pbmc3k.obs["cell_type"])
