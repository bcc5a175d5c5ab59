"""GEO (Gene Expression Omnibus): series (GSE family SOFT), curated datasets (GDS), single samples (GSM)
and platform family files (GPL with samples), read with GEOparse.

Config keys (all optional; every file name is relative to the dataset's raw folder):

- ``soft_file``: the SOFT file. Default: the only ``*.soft``/``*.soft.gz`` file in the raw folder, else
  the only ``*.txt``/``*.txt.gz`` file (GEO serves single samples as ``GSMnnn.txt``); ``counts_file``,
  ``annotation_file``, ``*.annot*`` and hidden files are never candidates. The GEO type comes from the
  name (``GSE``/``GDS``/``GSM``/``GPL`` prefix) or, failing that, from the file's ``^`` entry lines.
- ``platform``: the GPL id to keep when a series has samples on several platforms (required then).
- ``expression``: ``soft`` (default) reads each sample's data table; ``supplementary`` reads a counts
  table (``counts_file``) and takes only the sample labels from the SOFT file.
- ``value_column``: the sample-table column holding the values (``soft`` only; default ``VALUE``). A GDS
  holds one value per sample, so only ``VALUE`` applies to it.
- ``gene_symbol_column``: the column with gene symbols, in the platform table (``soft``) or among the
  counts table's non-sample columns (``supplementary``). Default: the first of ``Gene Symbol``,
  ``GENE_SYMBOL``, ``Symbol``, ``Gene_Sym``, ``ILMN_Gene``, ``IDENTIFIER`` (GDS), ``gene_name`` present,
  compared case-, space- and underscore-insensitively.
- ``annotation_file``: a GEO platform annotation file (``GPLnnn.annot.gz``) to take symbols and gene ids
  from instead of the platform table (a GSM file has none; a GDS has only its ``IDENTIFIER`` column).
- ``counts_file``: CSV/TSV (optionally gzipped) counts table, required for ``supplementary``; ``.csv``
  is comma-separated, ``.tsv``/``.tab``/``.txt`` tab-separated, anything else sniffed.
- ``orientation``: ``genes_x_samples`` (default: first column gene ids, one column per sample) or
  ``samples_x_genes`` (first column sample names, one column per gene) for the counts table.

What comes back:

- ``soft``: samples x probes of the published values (microarray intensities, log ratios...), float64,
  dense, never rounded, missing values kept as NaN; ``uns["count_data"] = False`` so count checks are
  skipped and count models refuse it. ``var`` is indexed by the **probe id** (``ID_REF``, unique per
  platform) with a ``gene_symbols`` column ("" where the platform gives none) and a ``gene_ids`` column
  (Ensembl ids where the platform has them, else Entrez gene ids, else ""). Probes are not collapsed to
  genes: several probes measure one gene, many measure none or several (``A /// B``), and averaging
  them would change the published values; whoever needs one row per gene aggregates on ``gene_symbols``.
- ``supplementary``: samples x genes, the counts exactly as in the file (CSR), ``count_data`` left True
  so :func:`scmix.data.sources.parse_dataset` rejects non-integer values. The counts table's sample names must
  be GEO sample accessions or titles. ``var`` is indexed by gene symbol when the table has a symbol
  column (made unique with ``-1``, ``-2``... suffixes, falling back to the id where a symbol is missing),
  else by the table's first column; ``gene_ids`` holds the first column.
- ``obs``: one row per sample (index: the GSM accession), every sample field GEO gives (``title``,
  ``source_name_ch1``, ``platform_id``, ``description``, protocols, ...; repeated fields joined with
  ``"; "``) plus one column per characteristic: ``characteristics_ch1 = "tissue: liver"`` becomes
  column ``tissue`` = ``liver``; channel 2 characteristics become ``<key>_ch2``; a characteristic whose
  key clashes with a GEO field becomes ``<key>_ch1``; entries without ``key:`` go to
  ``characteristics_ch1``. For a GDS the columns are the dataset's sample descriptions and its subsets
  (``disease state``, ``individual``, ...). All values are kept as text (``individual = 035`` must not
  become 35), as categoricals; ``/`` in field names becomes ``_``.
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scmix.data.fetch import check_gzip
from scmix.data.sources.registry import SOURCE_FILE
from scmix.errors import ScmixInputError

log = logging.getLogger("scmix.data.sources.geo")

EXPRESSION = ("soft", "supplementary")
ORIENTATION = ("genes_x_samples", "samples_x_genes")
GEO_TYPES = ("GSE", "GDS", "GSM", "GPL")
# column names compared after _norm (lower case, letters and digits only), in order of preference
SYMBOL_COLUMNS = ("genesymbol", "genesymbols", "symbol", "genesym", "ilmngene", "identifier", "genename")
ENSEMBL_COLUMNS = ("ensemblid", "ensemblgeneid", "ensembl", "ensemblgene")
ENTREZ_COLUMNS = ("entrezgeneid", "geneid", "entrezid", "entrezgene", "entrez", "gene")
GZIP_ERRORS = (OSError, EOFError, zlib.error)


def geo_soft_url(accession: str) -> str:
    """The NCBI HTTPS URL of the SOFT file of a series (``GSEnnn_family.soft.gz``) or dataset (``GDSnnn``).

    GEO groups records in folders named after the accession with its last three digits replaced by
    ``nnn`` (``GSE264667`` -> ``GSE264nnn``; ``GSE781`` -> ``GSEnnn``).
    """
    acc = str(accession).strip().upper()
    match = re.fullmatch(r"(GSE|GDS)(\d+)", acc)
    if not match:
        raise ScmixInputError(f"'{accession}' is not a GEO series (GSEnnn) or dataset (GDSnnn) accession")
    prefix, digits = match.groups()
    stem = f"{prefix}{digits[:-3]}nnn"
    if prefix == "GSE":
        return f"https://ftp.ncbi.nlm.nih.gov/geo/series/{stem}/{acc}/soft/{acc}_family.soft.gz"
    return f"https://ftp.ncbi.nlm.nih.gov/geo/datasets/{stem}/{acc}/soft/{acc}.soft.gz"


@dataclass
class _Samples:
    """What one SOFT file gives, reduced to one platform: sample labels and, for soft, the value tables."""

    accession: str
    geo_type: str
    platform: str
    obs: pd.DataFrame  # index: sample accession
    gsms: dict = field(default_factory=dict)  # accession -> GEOparse GSM (GSE, GSM, GPL files)
    gds: object = None  # GEOparse GDS
    platform_table: pd.DataFrame | None = None
    uns: dict = field(default_factory=dict)


def _norm(column) -> str:
    return re.sub(r"[^a-z0-9]", "", str(column).lower())


def _find_column(columns, preferred) -> str | None:
    by_norm = {}
    for col in columns:
        by_norm.setdefault(_norm(col), col)
    return next((by_norm[p] for p in preferred if p in by_norm), None)


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _raw_file(name: str, raw_dir: Path, file_name: str, key: str) -> Path:
    path = raw_dir / file_name
    if not path.is_file():
        raise ScmixInputError(f"'{key}: {file_name}' is not a file in the raw folder", dataset=name, path=str(path))
    return path


def _soft_path(name: str, spec: Mapping, raw_dir: Path) -> Path:
    if spec.get("soft_file"):
        return _raw_file(name, raw_dir, spec["soft_file"], "soft_file")
    if not raw_dir.is_dir():
        raise ScmixInputError("raw folder does not exist", dataset=name, path=str(raw_dir))
    skip = {raw_dir / spec[k] for k in ("counts_file", "annotation_file") if spec.get(k)}
    files = [
        p
        for p in sorted(raw_dir.rglob("*"))
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(raw_dir).parts)
        and ".annot" not in p.name.lower()
        and p not in skip
    ]
    for patterns in ((".soft", ".soft.gz"), (".txt", ".txt.gz")):
        found = [p for p in files if p.name.lower().endswith(patterns)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = [str(p.relative_to(raw_dir)) for p in found]
            raise ScmixInputError(f"several candidate SOFT files {names}; set 'soft_file'", dataset=name,
                                  path=str(raw_dir))  # fmt: skip
    raise ScmixInputError("no SOFT file (*.soft[.gz] or *.txt[.gz]) in the raw folder; set 'soft_file'",
                          dataset=name, path=str(raw_dir))  # fmt: skip


def _geo_type(name: str, path: Path) -> str:
    """GSE/GDS/GSM/GPL from GEO's own file naming, else from the SOFT entry lines (``^SERIES = ...``)."""
    prefix = path.name[:3].upper()
    if prefix in GEO_TYPES:
        return prefix
    counts: dict[str, int] = {}
    try:
        with gzip.open(path, "rt", errors="ignore") if _is_gz(path) else open(path, errors="ignore") as fh:
            for line in fh:
                if line.startswith("^"):
                    entry = line[1:].split("=", 1)[0].strip().upper()
                    counts[entry] = counts.get(entry, 0) + 1
    except GZIP_ERRORS as err:
        raise ScmixInputError(f"cannot read SOFT file (corrupt or truncated?): {err}", dataset=name,
                              path=str(path)) from err  # fmt: skip
    if counts.get("DATASET"):
        return "GDS"
    if counts.get("SERIES") == 1:
        return "GSE"
    if counts.get("SAMPLE") == 1 and not counts.get("PLATFORM"):
        return "GSM"
    if counts.get("PLATFORM") or counts.get("ANNOTATION"):
        return "GPL"
    raise ScmixInputError("not a GEO SOFT file: no ^SERIES, ^DATASET, ^SAMPLE or ^PLATFORM entry", dataset=name,
                          path=str(path))  # fmt: skip


def _read_geo(name: str, path: Path, geo_type: str):
    try:
        import GEOparse
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the geo source needs GEOparse: pip install GEOparse==2.0.4 six") from err
    if _is_gz(path):  # GEOparse's reader swallows gzip errors and would return partial data
        check_gzip(path, dataset=name)
    try:
        return GEOparse.get_GEO(filepath=str(path), geotype=geo_type, silent=True)
    except GZIP_ERRORS as err:
        raise ScmixInputError(f"cannot read SOFT file (corrupt or truncated?): {err}", dataset=name,
                              path=str(path)) from err  # fmt: skip
    except Exception as err:  # GEOparse raises bare Exception/AssertionError on malformed SOFT
        raise ScmixInputError(f"GEOparse cannot parse this {geo_type} SOFT file: {type(err).__name__}: {err}",
                              dataset=name, path=str(path)) from err  # fmt: skip


def _first(metadata: Mapping, key: str, default: str = "") -> str:
    values = metadata.get(key) or [default]
    return str(values[0])


def _sample_row(metadata: Mapping) -> dict:
    """One obs row from a GSM's metadata: GEO fields, and one column per ``key: value`` characteristic."""
    fields = {k.replace("/", "_"): v for k, v in metadata.items() if not re.fullmatch(r"characteristics_ch\d+", k)}
    chars: dict[str, list[str]] = {}
    for key, values in metadata.items():
        match = re.fullmatch(r"characteristics_ch(\d+)", key)
        if not match:
            continue
        channel = int(match.group(1))
        for value in values:
            label, sep, text = str(value).partition(":")
            label = label.strip().replace("/", "_")
            if not sep or not label:
                column, text = key, str(value)
            elif channel > 1 or label in fields or label == key:
                column = f"{label}_ch{channel}"
            else:
                column = label
            chars.setdefault(column, []).append(text.strip())
    row = {}
    if "title" in fields:
        row["title"] = "; ".join(fields.pop("title"))
    row.update({k: "; ".join(v) for k, v in chars.items()})
    row.update({k: "; ".join(str(x) for x in v) for k, v in fields.items()})
    return row


def _obs_frame(rows: Mapping[str, dict]) -> pd.DataFrame:
    obs = pd.DataFrame.from_dict(rows, orient="index")
    obs.index = pd.Index([str(i) for i in obs.index], name="sample")
    for col in obs.columns:
        obs[col] = obs[col].astype("category")
    return obs


def _platform_choice(name: str, path: Path, by_platform: Mapping[str, list], wanted: str | None, what: str) -> str:
    if wanted is not None:
        if wanted not in by_platform:
            raise ScmixInputError(f"unknown platform '{wanted}'; this {what} has samples on {sorted(by_platform)}",
                                  dataset=name, path=str(path))  # fmt: skip
        return wanted
    if len(by_platform) > 1:
        counts = ", ".join(f"{p}: {len(s)} samples" for p, s in sorted(by_platform.items()))
        raise ScmixInputError(f"this {what} has samples on {len(by_platform)} platforms ({counts}); set 'platform' "
                              "to one of them", dataset=name, path=str(path))  # fmt: skip
    return next(iter(by_platform))


def _gds_samples(name: str, path: Path, gds, wanted: str | None) -> _Samples:
    """A GDS: one value column per sample; labels from its sample descriptions and subsets (by subset type)."""
    platform = _first(gds.metadata, "platform")
    if gds.table.empty or "ID_REF" not in gds.table:
        raise ScmixInputError(f"dataset {gds.name} has no data table", dataset=name, path=str(path))
    ids = [c for c in gds.table.columns if c not in ("ID_REF", "IDENTIFIER")]
    _platform_choice(name, path, {platform: ids}, wanted, "dataset")
    # GEOparse drops samples missing from a subset type from gds.columns, so labels are rebuilt from the subsets
    described = gds.columns["description"] if "description" in gds.columns else pd.Series(dtype=object)
    rows = {s: {"description": described.get(s), "platform_id": platform} for s in ids}
    for subset in gds.subsets.values():
        kind = _first(subset.metadata, "type").replace("/", "_")
        label = _first(subset.metadata, "description")
        for s in _first(subset.metadata, "sample_id").split(","):
            if s.strip() in rows:
                row = rows[s.strip()]
                row[kind] = f"{row[kind]}; {label}" if row.get(kind) else label
    uns = {"title": _first(gds.metadata, "title"), "value_type": _first(gds.metadata, "value_type"),
           "reference_series": _first(gds.metadata, "reference_series")}  # fmt: skip
    annotation = gds.table[[c for c in ("ID_REF", "IDENTIFIER") if c in gds.table]].rename(columns={"ID_REF": "ID"})
    return _Samples(str(gds.name), "GDS", platform, _obs_frame(rows), gds=gds, platform_table=annotation, uns=uns)


def _samples(name: str, path: Path, spec: Mapping) -> _Samples:
    geo_type = _geo_type(name, path)
    geo = _read_geo(name, path, geo_type)
    wanted = spec.get("platform")
    wanted = str(wanted).strip() if wanted else None
    if geo_type == "GDS":
        return _gds_samples(name, path, geo, wanted)
    if geo_type == "GSM":
        gsms, series_meta, gpls = {geo.name: geo}, {}, {}
    elif geo_type == "GPL":
        gsms, series_meta, gpls = dict(geo.gsms), {}, {geo.name: geo}
    else:
        gsms, series_meta, gpls = dict(geo.gsms), geo.metadata, geo.gpls
    if not gsms:
        raise ScmixInputError(f"{geo_type} {geo.name} holds no samples", dataset=name, path=str(path))
    listed = series_meta.get("sample_id", [])
    missing = [s for s in listed if s not in gsms]
    if missing:
        raise ScmixInputError(f"the series lists {len(listed)} samples but the file holds {len(gsms)} (missing "
                              f"{missing[:5]}...): the file looks truncated", dataset=name,
                              path=str(path))  # fmt: skip
    by_platform: dict[str, list[str]] = {}
    default = str(geo.name) if geo_type == "GPL" else ""  # samples in a GPL family file are on that platform
    for acc, gsm in gsms.items():
        by_platform.setdefault(_first(gsm.metadata, "platform_id", default), []).append(acc)
    platform = _platform_choice(name, path, by_platform, wanted, "series" if geo_type == "GSE" else geo_type)
    keep = {acc: gsms[acc] for acc in by_platform[platform]}
    gpl = gpls.get(platform)
    table = gpl.table if gpl is not None and not gpl.table.empty else None
    uns = {"title": _first(series_meta, "title")} if series_meta else {}
    obs = _obs_frame({acc: _sample_row(gsm.metadata) for acc, gsm in keep.items()})
    return _Samples(str(geo.name), geo_type, platform, obs, gsms=keep, platform_table=table, uns=uns)


def _annotation_table(name: str, spec: Mapping, raw_dir: Path, platform: str) -> tuple[pd.DataFrame, Path] | None:
    if not spec.get("annotation_file"):
        return None
    path = _raw_file(name, raw_dir, spec["annotation_file"], "annotation_file")
    gpl = _read_geo(name, path, "GPL")
    if gpl.table.empty:
        raise ScmixInputError("annotation file has no platform table", dataset=name, path=str(path))
    if str(gpl.name) != platform:
        raise ScmixInputError(f"annotation file is for platform '{gpl.name}' but the data are on '{platform}'",
                              dataset=name, path=str(path))  # fmt: skip
    return gpl.table, path


def _probe_var(name: str, path: Path, probes: pd.Index, table: pd.DataFrame | None, spec: Mapping) -> pd.DataFrame:
    """var for probe ids: gene symbols and ids from the (annotation or platform) table, joined on its ID."""
    var = pd.DataFrame(index=pd.Index(probes, name="probe_id"))
    wanted = spec.get("gene_symbol_column")
    symbols = None
    if table is not None and "ID" in table:
        table = table.assign(ID=table["ID"].astype(str)).drop_duplicates("ID").set_index("ID")
        symbol_col = wanted or _find_column(table.columns, SYMBOL_COLUMNS)
        if wanted and wanted not in table:
            raise ScmixInputError(f"gene_symbol_column '{wanted}' is not a platform table column (columns: "
                                  f"{list(table.columns)})", dataset=name, path=str(path))  # fmt: skip
        if symbol_col is not None:
            symbols = table[symbol_col].reindex(var.index)
        id_col = _find_column(table.columns, ENSEMBL_COLUMNS) or _find_column(table.columns, ENTREZ_COLUMNS)
        if id_col is not None:
            var["gene_ids"] = _text(table[id_col].reindex(var.index))
    elif wanted:
        raise ScmixInputError(f"gene_symbol_column '{wanted}' set but there is no platform table to take it from",
                              dataset=name, path=str(path))  # fmt: skip
    if symbols is None:
        log.warning("%s: no gene symbol column found; gene_symbols is empty (set annotation_file?)", name)
    var["gene_symbols"] = _text(symbols) if symbols is not None else ""
    if "gene_ids" not in var:
        var["gene_ids"] = ""
    return var[["gene_symbols", "gene_ids"]]


def _text(values: pd.Series) -> np.ndarray:
    """Strings with '' for missing; integer-valued floats (Entrez ids read as float) without '.0'."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return np.array(out, dtype=object)


def _check_sample(name: str, path: Path, acc: str, gsm, column: str) -> None:
    table = gsm.table
    if table.empty:
        raise ScmixInputError(f"sample {acc} has no data table (sequencing series keep their values in "
                              "supplementary files: use 'expression: supplementary')", dataset=name,
                              path=str(path))  # fmt: skip
    declared = gsm.metadata.get("data_row_count")
    if declared and str(declared[0]).isdigit() and int(declared[0]) != len(table):
        raise ScmixInputError(f"sample {acc} declares {declared[0]} data rows but holds {len(table)}: the file "
                              "looks truncated", dataset=name, path=str(path))  # fmt: skip
    if column not in table or "ID_REF" not in table:
        what = f"value column '{column}'" if column not in table else "column 'ID_REF'"
        raise ScmixInputError(f"{what} missing in sample {acc} (columns: {list(table.columns)}); set "
                              "'value_column'", dataset=name, path=str(path))  # fmt: skip
    values = table[column]
    if not pd.api.types.is_numeric_dtype(values):
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        if len(bad):
            raise ScmixInputError(f"value column '{column}' of sample {acc} is not numeric (e.g. {bad.iloc[0]!r})",
                                  dataset=name, path=str(path))  # fmt: skip
    ids = table["ID_REF"].astype(str)
    if ids.duplicated().any():
        raise ScmixInputError(f"sample {acc} has duplicated ID_REF values (e.g. {ids[ids.duplicated()].iloc[0]!r})",
                              dataset=name, path=str(path))  # fmt: skip


def _soft_values(name: str, path: Path, spec: Mapping, samples: _Samples) -> pd.DataFrame:
    """samples x probes of the chosen value column, in file order."""
    column = spec.get("value_column") or "VALUE"
    if samples.gds is not None:
        if column != "VALUE":
            raise ScmixInputError(f"value_column '{column}' does not apply to a GDS (one value per sample)",
                                  dataset=name, path=str(path))  # fmt: skip
        table = samples.gds.table.assign(ID_REF=samples.gds.table["ID_REF"].astype(str)).set_index("ID_REF")
        if not table.index.is_unique:
            raise ScmixInputError("GDS table has duplicated ID_REF values", dataset=name, path=str(path))
        return table[list(samples.obs.index)].apply(pd.to_numeric, errors="coerce").T
    import GEOparse

    for acc, gsm in samples.gsms.items():
        _check_sample(name, path, acc, gsm, column)
    series = GEOparse.GSE(name=samples.accession, metadata={}, gsms=samples.gsms)
    pivot = series.pivot_samples(column)  # probes x samples, both sorted
    pivot.index = pivot.index.astype(str)
    probes = dict.fromkeys(i for gsm in samples.gsms.values() for i in gsm.table["ID_REF"].astype(str))
    pivot = pivot.reindex(index=list(probes), columns=list(samples.gsms))  # file order
    return pivot.apply(pd.to_numeric, errors="coerce").T


def _read_counts(name: str, path: Path) -> pd.DataFrame:
    stem = re.sub(r"\.(gz|bz2|xz|zip)$", "", path.name.lower())
    sep = "," if stem.endswith(".csv") else "\t" if stem.endswith((".tsv", ".tab", ".txt")) else None
    try:
        table = pd.read_csv(path, sep=sep, engine="c" if sep else "python", index_col=0)
    except (*GZIP_ERRORS, ValueError, UnicodeDecodeError) as err:
        raise ScmixInputError(f"cannot read counts table: {err}", dataset=name, path=str(path)) from err
    if table.shape[1] == 0 or table.shape[0] == 0:
        raise ScmixInputError(f"counts table has shape {table.shape} after reading with separator {sep!r}; "
                              "expected an id column and numeric columns", dataset=name, path=str(path))  # fmt: skip
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)
    return table


def _supplementary(name: str, raw_dir: Path, spec: Mapping, samples: _Samples, orientation: str) -> ad.AnnData:
    path = _raw_file(name, raw_dir, spec["counts_file"], "counts_file")
    table = _read_counts(name, path)
    text_cols = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if orientation == "samples_x_genes":
        labels = table[text_cols]  # per-sample labels given in the counts file itself
        genes = table.drop(columns=text_cols).T
        annotation = pd.DataFrame(index=genes.index)
    else:
        labels = None
        annotation, genes = table[text_cols], table.drop(columns=text_cols)
    by_title: dict[str, str] = {}
    if "title" in samples.obs:
        for acc, title in samples.obs["title"].astype(str).items():
            by_title.setdefault(title, acc)
    matched = {c: c if c in samples.obs.index else by_title.get(c) for c in genes.columns}
    unmatched = [c for c, acc in matched.items() if acc is None]
    if unmatched:
        raise ScmixInputError(f"{len(unmatched)} of {len(matched)} counts-table samples match no GEO sample "
                              f"accession or title on platform {samples.platform} (e.g. {unmatched[:3]}; GEO has "
                              f"e.g. {list(samples.obs.index[:3])})", dataset=name, path=str(path))  # fmt: skip
    if orientation == "genes_x_samples":
        stray = [c for c in text_cols if c in samples.obs.index or c in by_title]
        if stray:
            raise ScmixInputError(f"sample column(s) {stray[:3]} hold non-numeric values", dataset=name,
                                  path=str(path))  # fmt: skip
    accessions = [matched[c] for c in genes.columns]
    if len(set(accessions)) < len(accessions):
        raise ScmixInputError("several counts-table samples match the same GEO sample", dataset=name,
                              path=str(path))  # fmt: skip
    obs = samples.obs.loc[accessions].copy()
    if labels is not None:
        for col in labels.columns:
            obs[col] = pd.Categorical(labels[col].astype(str).to_numpy())
    var = _counts_var(name, path, annotation, spec)
    adata = ad.AnnData(X=sp.csr_matrix(genes.T.to_numpy()), obs=obs, var=var)
    adata.uns["count_data"] = True
    adata.uns[SOURCE_FILE] = str(path)
    return adata


def _counts_var(name: str, path: Path, annotation: pd.DataFrame, spec: Mapping) -> pd.DataFrame:
    ids = pd.Index(annotation.index.astype(str))
    wanted = spec.get("gene_symbol_column")
    if wanted and wanted not in annotation:
        raise ScmixInputError(f"gene_symbol_column '{wanted}' is not a text column of the counts table (those "
                              f"are: {list(annotation.columns)})", dataset=name, path=str(path))  # fmt: skip
    column = wanted or _find_column(annotation.columns, SYMBOL_COLUMNS)
    symbols = np.asarray(ids, dtype=object)
    if column is not None:
        given = _text(annotation[column])
        symbols = np.where(given != "", given, symbols)
    var = pd.DataFrame({"gene_symbols": symbols, "gene_ids": np.asarray(ids, dtype=object)},
                       index=pd.Index(symbols))  # fmt: skip
    var.index = ad.utils.make_index_unique(var.index)
    return var


def parse(name: str, spec: dict, raw_dir: Path) -> ad.AnnData:
    """Read one GEO SOFT file (plus, for ``supplementary``, a counts table) from ``raw_dir``; see the module doc."""
    raw_dir = Path(raw_dir)
    expression = spec.get("expression") or "soft"
    orientation = spec.get("orientation") or "genes_x_samples"
    if expression not in EXPRESSION:
        raise ScmixInputError(f"expression must be one of {list(EXPRESSION)}, not {expression!r}", dataset=name)
    if orientation not in ORIENTATION:
        raise ScmixInputError(f"orientation must be one of {list(ORIENTATION)}, not {orientation!r}", dataset=name)
    if expression == "supplementary" and not spec.get("counts_file"):
        raise ScmixInputError("expression 'supplementary' needs 'counts_file'", dataset=name, path=str(raw_dir))
    path = _soft_path(name, spec, raw_dir)
    samples = _samples(name, path, spec)
    if expression == "supplementary":
        adata = _supplementary(name, raw_dir, spec, samples, orientation)
    else:
        values = _soft_values(name, path, spec, samples)
        table, table_path = _annotation_table(name, spec, raw_dir, samples.platform) or (samples.platform_table, path)
        var = _probe_var(name, table_path, values.columns, table, spec)
        obs = samples.obs.loc[values.index].copy()
        obs.index.name = "sample"
        adata = ad.AnnData(X=values.to_numpy(dtype=np.float64), obs=obs, var=var)
        adata.uns["count_data"] = False
        n_missing = int(np.isnan(adata.X).sum())
        if n_missing:
            log.warning("%s: %d of %d values are missing (NaN)", name, n_missing, adata.X.size)
        samples.uns["value_column"] = spec.get("value_column") or "VALUE"
    geo = {"accession": samples.accession, "geo_type": samples.geo_type, "platform": samples.platform,
           "soft_file": path.name, "expression": expression, **samples.uns}  # fmt: skip
    adata.uns["geo"] = {k: str(v) for k, v in geo.items() if v not in (None, "")}
    adata.uns.setdefault(SOURCE_FILE, str(path))
    log.info("%s: GEO %s %s, platform %s: %d samples x %d features (%s)", name, samples.geo_type, samples.accession,
             samples.platform, adata.n_obs, adata.n_vars, expression)  # fmt: skip
    return adata
