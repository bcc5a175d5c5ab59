import os

import numpy as np
import pytest
import scipy.sparse as sp

from scmix.errors import ScmixInputError
from scmix.io import as_csr_counts, check_integer_counts, read_h5ad, write_h5ad


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([[1.0, 2.5]]), "must be integers"),
        (np.array([[1, -3]]), "negative"),
        (np.array([[1.0, np.nan]]), "NaN"),
    ],
)
def test_check_integer_counts_rejects_and_names_dataset_and_file(values, message):
    with pytest.raises(ScmixInputError, match=message) as err:
        check_integer_counts(sp.csr_matrix(values), dataset="pbmc", path="raw/pbmc.h5ad")
    assert "dataset 'pbmc'" in str(err.value) and "raw/pbmc.h5ad" in str(err.value)


def test_integer_valued_floats_pass_and_csr_keeps_counts():
    X = as_csr_counts(np.array([[0.0, 3.0], [2.0, 0.0]]))
    check_integer_counts(X)
    assert X.dtype == np.int32 and X.nnz == 2 and X[0, 1] == 3


def test_write_is_atomic_and_roundtrips(tmp_path, blood, monkeypatch):
    out = tmp_path / "x.h5ad"
    write_h5ad(blood, out)
    back = read_h5ad(out)
    assert (back.X != blood.X).nnz == 0
    assert list(back.obs["cell_type"]) == list(blood.obs["cell_type"])
    # the mode a plain open() gives (the temp file would be owner-only): readable by the group on a cluster
    umask = os.umask(0o027)
    try:
        write_h5ad(blood, tmp_path / "g.h5ad")
    finally:
        os.umask(umask)
    assert (tmp_path / "g.h5ad").stat().st_mode & 0o777 == 0o640
    (tmp_path / "g.h5ad").unlink()

    def boom(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(blood), "write_h5ad", boom)
    with pytest.raises(RuntimeError):
        write_h5ad(blood, tmp_path / "y.h5ad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5ad"]


def test_read_corrupt_file_names_it(tmp_path):
    bad = tmp_path / "bad.h5ad"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ScmixInputError, match="bad.h5ad"):
        read_h5ad(bad, dataset="d")


def test_require_unique_names_count_example_dataset_and_file():
    from scmix.io import require_unique

    require_unique(["a", "b"], "barcodes", dataset="d", path="f.csv")
    with pytest.raises(ScmixInputError, match=r"dataset 'd', file 'f.csv': 2 duplicated barcodes \(e.g. 'a'\)"):
        require_unique(["a", "b", "a", "a"], "barcodes", dataset="d", path="f.csv")
