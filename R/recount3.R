# recount3.R: one recount3 project from a recount3 mirror -> integer read counts, sample and gene tables.
#
# Plain-R reimplementation of what the recount3 Bioconductor package does for one project
# (create_rse_manual(type = "gene") followed by compute_read_counts()), because recount3 itself is not
# packaged for Debian. Only base R, tools and edgeR are used.
#
#   URLs     locate_url() / locate_url_ann():
#              {mirror}/{organism}/data_sources/{source}/gene_sums/{NN}/{PROJECT}/{source}.gene_sums.{PROJECT}.{ANN}.gz
#              {mirror}/{organism}/data_sources/{source}/metadata/{NN}/{PROJECT}/{source}.{table}.{PROJECT}.MD.gz
#                with table in ({source}, recount_project, recount_qc, recount_seq_qc, recount_pred)
#              {mirror}/{organism}/annotations/gene_sums/{organism}.gene_sums.{ANN}.gtf.gz
#            NN = the last two characters of the project ID.
#   metadata read_metadata(): every table read with read.delim(quote = "", comment.char = ""), empty tables
#            dropped with a warning, column names lower-cased, merged with merge(by = c("rail_id",
#            "external_id", "study")) in the order above, non-key columns prefixed with the table's origin
#            ("sra.", "recount_qc.", ...). merge() orders samples by rail_id; clashing names get merge()'s
#            .x/.y suffixes (sra.sample_acc.x, recount_pred.sample_acc.y) exactly as in recount3's colData.
#            BigWigURL is added as create_rse_manual() does.
#   counts   compute_read_counts() (R/transform_counts.R in LieberInstitute/recount3):
#              counts <- round(t(t(raw_counts) / colData$recount_qc.star.average_mapped_length), 0)
#            raw_counts are the gene_sums coverage sums (sum of per-base coverage over the gene's exons).
#            --scaled auc|mapped_reads also writes transform_counts() (targetSize 4e7, L 100, rounded).
#   filter   edgeR::filterByExpr(counts, group = metadata[[group]], min.count = min_count)   (--filter edger)
#            or genes with >= min_count reads in >= min_samples samples                      (--filter min_samples)
#
# Output folder (written to a temporary sibling folder, renamed at the end; nothing is left on failure):
#   counts.tsv.gz  integer read counts of the kept genes, genes x samples (gene_id, then one column per
#                  external_id, in samples.tsv order)
#   samples.tsv    the merged sample metadata, every column (keys rail_id, external_id, study first)
#   genes.tsv      the kept genes: gene_id as in recount3 (ENSG00000000003.14), every GTF attribute
#                  (gene_name, gene_type, ...), bp_length (the GTF score column), seqname, start, end, strand
#   filter.json    project, URLs, samples, genes before/after the filter and the filter's settings
#
# Run as a Snakemake script (params mirror, project, organism, source, annotation, filter, min_samples,
# min_count, group, scaled; output[[1]] = output folder; log[[1]]) or from the command line:
#   Rscript R/recount3.R --mirror URL --project SRP014565 --out DIR [--organism human] [--source sra]
#     [--annotation G026] [--filter edger|min_samples|none] [--min-samples N] [--min-count N]
#     [--group COLUMN] [--scaled none|auc|mapped_reads]

USAGE <- paste(
  "usage: Rscript R/recount3.R --mirror URL --project ID --out DIR [--organism human|mouse] [--source sra]",
  "[--annotation G026] [--filter edger|min_samples|none] [--min-samples N] [--min-count N] [--group COLUMN]",
  "[--scaled none|auc|mapped_reads]"
)

DEFAULTS <- list(
  mirror = NULL, project = NULL, out = NULL, organism = "human", source = "sra", annotation = NULL,
  filter = "edger", min_samples = 1, min_count = 10, group = NULL, scaled = "none"
)

# recount3's annotation_ext(): long names are accepted as well as the file codes
ANNOTATION_CODES <- c(
  gencode_v26 = "G026", gencode_v29 = "G029", ercc = "ERCC", fantom6_cat = "F006", refseq = "R109",
  sirv = "SIRV", gencode_v23 = "M023"
)
DEFAULT_ANNOTATION <- c(human = "G026", mouse = "M023")

KEYS <- c("rail_id", "external_id", "study")

CONTEXT <- new.env()
CONTEXT$project <- NA_character_

# ---------------------------------------------------------------------------------------------- messages

say <- function(...) {
  message(format(Sys.time(), "%Y-%m-%d %H:%M:%S"), " recount3 ", CONTEXT$project, ": ", ...)
}

# A failure the script reports as one line naming the project and the URL/file involved.
fail <- function(what, url = NULL) {
  text <- paste0(what, if (!is.null(url)) paste0(" (", url, ")") else "")
  cond <- structure(class = c("recount3_failure", "error", "condition"), list(message = text, call = NULL))
  stop(cond)
}

# ----------------------------------------------------------------------------------------------- options

parse_cli <- function(args) {
  opts <- list()
  i <- 1
  while (i <= length(args)) {
    arg <- args[[i]]
    if (arg %in% c("-h", "--help")) {
      cat(USAGE, "\n")
      quit(status = 0)
    }
    if (!startsWith(arg, "--")) fail(paste0("unexpected argument '", arg, "'; ", USAGE))
    key <- sub("^--", "", arg)
    if (grepl("=", key, fixed = TRUE)) {
      value <- sub("^[^=]*=", "", key)
      key <- sub("=.*$", "", key)
    } else {
      if (i == length(args)) fail(paste0("option --", key, " needs a value; ", USAGE))
      value <- args[[i + 1]]
      i <- i + 1
    }
    key <- gsub("-", "_", key, fixed = TRUE)
    if (!key %in% names(DEFAULTS)) fail(paste0("unknown option --", gsub("_", "-", key), "; ", USAGE))
    opts[[key]] <- value
    i <- i + 1
  }
  opts
}

from_snakemake <- function(sm) {
  opts <- list()
  for (key in setdiff(names(DEFAULTS), "out")) {
    value <- sm@params[[key]]
    if (!is.null(value) && length(value) > 0) opts[[key]] <- value
  }
  opts$out <- sm@output[[1]]
  opts
}

is_blank <- function(x) is.null(x) || length(x) == 0 || all(is.na(x)) || identical(as.character(x), "")

check_options <- function(opts) {
  for (key in names(DEFAULTS)) {
    if (is_blank(opts[[key]])) opts[[key]] <- DEFAULTS[[key]]
  }
  for (key in c("mirror", "project", "out")) {
    if (is_blank(opts[[key]])) fail(paste0("missing --", key, "; ", USAGE))
  }
  opts$project <- as.character(opts$project)
  CONTEXT$project <- opts$project
  if (!grepl("^[A-Za-z0-9_.-]+$", opts$project) || nchar(opts$project) < 2) {
    fail(paste0("project ID '", opts$project, "' is not a recount3 project ID"))
  }
  opts$organism <- as.character(opts$organism)
  if (!opts$organism %in% names(DEFAULT_ANNOTATION)) {
    fail(paste0("organism must be one of ", paste(names(DEFAULT_ANNOTATION), collapse = ", "),
                ", not '", opts$organism, "'"))
  }
  opts$source <- as.character(opts$source)
  if (!grepl("^[A-Za-z0-9_]+$", opts$source)) fail(paste0("source must be a data source name like 'sra', not '",
                                                          opts$source, "'"))
  if (is_blank(opts$annotation)) opts$annotation <- DEFAULT_ANNOTATION[[opts$organism]]
  opts$annotation <- as.character(opts$annotation)
  if (tolower(opts$annotation) %in% names(ANNOTATION_CODES)) {
    opts$annotation <- ANNOTATION_CODES[[tolower(opts$annotation)]]
  }
  opts$filter <- as.character(opts$filter)
  if (!opts$filter %in% c("edger", "min_samples", "none")) {
    fail(paste0("filter must be edger, min_samples or none, not '", opts$filter, "'"))
  }
  for (key in c("min_samples", "min_count")) {
    value <- suppressWarnings(as.numeric(opts[[key]]))
    if (length(value) != 1 || is.na(value) || value < 0) {
      fail(paste0(key, " must be a non-negative number, not '", opts[[key]], "'"))
    }
    opts[[key]] <- value
  }
  opts$scaled <- as.character(opts$scaled)
  if (!opts$scaled %in% c("none", "auc", "mapped_reads")) {
    fail(paste0("scaled must be none, auc or mapped_reads, not '", opts$scaled, "'"))
  }
  opts$mirror <- sub("/+$", "", as.character(opts$mirror))
  opts$out <- sub("/+$", "", as.character(opts$out))
  opts
}

# ----------------------------------------------------------------------------------------- URLs, fetching

project_home <- function(source) paste0("data_sources/", source)

# locate_url(project, project_home, type) for type = "metadata" or "gene"
locate_url <- function(mirror, organism, home, project, type, annotation = NULL) {
  base_dir <- switch(type, metadata = "metadata", gene = "gene_sums")
  nn <- substr(project, nchar(project) - 1, nchar(project))
  base_url <- paste(mirror, organism, home, base_dir, nn, project, sep = "/")
  if (type == "metadata") {
    tags <- c(basename(home), "recount_project", "recount_qc", "recount_seq_qc", "recount_pred")
    files <- paste0(basename(home), ".", tags, ".", project, ".MD.gz")
  } else {
    files <- paste0(basename(home), ".gene_sums.", project, ".", annotation, ".gz")
  }
  urls <- paste(base_url, files, sep = "/")
  names(urls) <- files
  urls
}

# locate_url_ann(type = "gene")
locate_url_ann <- function(mirror, organism, annotation) {
  paste(mirror, organism, "annotations", "gene_sums", paste0(organism, ".gene_sums.", annotation, ".gtf.gz"),
        sep = "/")
}

# A local path for `url`: file:// URLs and plain paths are read in place, http(s)/ftp ones downloaded to `dir`.
fetch <- function(url, dir) {
  if (grepl("^(https?|ftp)://", url)) {
    dest <- file.path(dir, basename(url))
    problems <- character()
    ok <- withCallingHandlers(
      tryCatch(
        utils::download.file(url, dest, mode = "wb", quiet = TRUE, method = "libcurl") == 0,
        error = function(e) {
          problems <<- c(problems, conditionMessage(e))
          FALSE
        }
      ),
      warning = function(w) {
        problems <<- c(problems, conditionMessage(w))
        invokeRestart("muffleWarning")
      }
    )
    if (!ok || !file.exists(dest)) {
      unlink(dest)
      status <- grep("status was", problems, value = TRUE)
      reason <- if (length(status)) status[1] else if (length(problems)) problems[1] else "download failed"
      fail(paste0("cannot download from the mirror: ", reason), url)
    }
    return(dest)
  }
  path <- if (grepl("^file://", url)) utils::URLdecode(sub("^file://(localhost)?", "", url)) else url
  if (!file.exists(path)) fail("file not found on the mirror", url)
  if (dir.exists(path)) fail("expected a file on the mirror but found a folder", url)
  path
}

# Stop unless `path` is a complete gzip stream: R's gzfile() reads a truncated file silently.
check_gzip <- function(path, url) {
  gz <- Sys.which("gzip")
  if (nzchar(gz)) {
    out <- suppressWarnings(system2(gz, c("-t", shQuote(path)), stdout = TRUE, stderr = TRUE))
    status <- attr(out, "status")
    if (!is.null(status) && status != 0) {
      detail <- sub("^.*: ", "", out[length(out)])
      fail(paste0("corrupt or truncated gzip file (", detail, ")"), url)
    }
    return(invisible(TRUE))
  }
  # without a gzip binary: the trailer's ISIZE (single-member gzip) must match the decompressed length
  size <- file.size(path)
  con <- file(path, "rb")
  magic <- readBin(con, "raw", 2)
  close(con)
  if (size < 18 || !identical(magic, as.raw(c(0x1f, 0x8b)))) fail("not a gzip file", url)
  con <- file(path, "rb")
  seek(con, size - 4)
  isize <- sum(as.numeric(readBin(con, "raw", 4)) * 256^(0:3))
  close(con)
  con <- gzfile(path, "rb")
  on.exit(close(con))
  n <- 0
  repeat {
    chunk <- readBin(con, "raw", 2^22)
    if (length(chunk) == 0) break
    n <- n + length(chunk)
  }
  if (n %% 2^32 != isize) fail("corrupt or truncated gzip file (decompressed length does not match)", url)
  invisible(TRUE)
}

# ------------------------------------------------------------------------------------------------ metadata

# read_metadata(): returns the merged sample table
read_metadata <- function(paths, urls) {
  tables <- list()
  for (i in seq_along(paths)) {
    check_gzip(paths[[i]], urls[[i]])
    tab <- tryCatch(
      utils::read.delim(paths[[i]], sep = "\t", check.names = FALSE, quote = "", comment.char = "",
                        stringsAsFactors = FALSE),
      error = function(e) fail(paste0("cannot read metadata table: ", conditionMessage(e)), urls[[i]]),
      warning = function(w) fail(paste0("malformed metadata table: ", conditionMessage(w)), urls[[i]])
    )
    colnames(tab) <- tolower(colnames(tab))
    if ("study_acc" %in% colnames(tab) && !"study" %in% colnames(tab)) {
      colnames(tab)[colnames(tab) == "study_acc"] <- "study"
    }
    if ("run_acc" %in% colnames(tab) && !"external_id" %in% colnames(tab)) {
      colnames(tab)[colnames(tab) == "run_acc"] <- "external_id"
    }
    missing <- setdiff(KEYS, colnames(tab))
    if (length(missing)) {
      fail(paste0("malformed metadata table: no column ", paste(missing, collapse = ", ")), urls[[i]])
    }
    tab$external_id <- as.character(tab$external_id)
    tab$study <- as.character(tab$study)
    if (nrow(tab) == 0) {
      say("warning: metadata table ", names(paths)[[i]], " is empty and is dropped (as recount3 does)")
      next
    }
    if (anyDuplicated(tab$external_id)) {
      fail(paste0("malformed metadata table: duplicated external_id ",
                  tab$external_id[duplicated(tab$external_id)][1]), urls[[i]])
    }
    tables[[names(paths)[[i]]]] <- tab
  }
  if (length(tables) == 0) fail("all metadata tables are empty", dirname(urls[[1]]))
  meta <- Reduce(function(...) merge(..., by = KEYS), tables)
  origin <- vapply(strsplit(names(tables), ".", fixed = TRUE), "[", character(1), 2)
  origin_n <- vapply(tables, ncol, integer(1)) - length(KEYS)
  colnames(meta) <- paste0(rep(c("", paste0(origin, ".")), c(length(KEYS), origin_n)), colnames(meta))
  if (nrow(meta) == 0) {
    fail("the metadata tables share no sample (merged on rail_id, external_id, study)", dirname(urls[[1]]))
  }
  meta
}

# ------------------------------------------------------------------------------------------------- counts

# read_counts(): the coverage sums as a numeric matrix, genes x samples (doubles: sums can pass 2^31)
read_gene_sums <- function(path, url, annotation) {
  check_gzip(path, url)
  con <- gzfile(path, "rt")
  head_lines <- readLines(con, n = 50, warn = FALSE)
  close(con)
  n_skip <- sum(cumprod(startsWith(head_lines, "#")))
  if (n_skip >= length(head_lines)) fail("malformed gene sums file: no header line", url)
  ann_line <- grep("^##annotation=", head_lines[seq_len(n_skip)], value = TRUE)
  if (length(ann_line) && sub("^##annotation=", "", ann_line[1]) != annotation) {
    fail(paste0("gene sums file is for annotation ", sub("^##annotation=", "", ann_line[1]), ", not ", annotation),
         url)
  }
  header <- strsplit(head_lines[[n_skip + 1]], "\t", fixed = TRUE)[[1]]
  if (length(header) < 2 || header[[1]] != "gene_id") {
    fail("malformed gene sums file: the header line does not start with gene_id", url)
  }
  what <- c(list(character()), rep(list(numeric()), length(header) - 1))
  cols <- tryCatch(
    scan(path, what = what, sep = "\t", skip = n_skip + 1, quote = "", comment.char = "", quiet = TRUE,
         na.strings = character(), multi.line = FALSE, fill = FALSE),
    error = function(e) fail(paste0("malformed gene sums file (lines counted after the ", n_skip + 1,
                                    " header lines): ", conditionMessage(e)), url),
    warning = function(w) fail(paste0("malformed gene sums file: ", conditionMessage(w)), url)
  )
  sums <- do.call(cbind, cols[-1])
  if (length(cols[[1]]) == 0) fail("gene sums file holds no genes", url)
  dimnames(sums) <- list(cols[[1]], header[-1])
  if (anyNA(sums) || any(sums < 0)) fail("malformed gene sums file: missing or negative values", url)
  if (anyDuplicated(rownames(sums))) {
    fail(paste0("malformed gene sums file: duplicated gene_id ", rownames(sums)[duplicated(rownames(sums))][1]), url)
  }
  sums
}

# compute_read_counts(rse, round = TRUE, avg_mapped_read_length = "recount_qc.star.average_mapped_length")
compute_read_counts <- function(raw_counts, avg_mapped_read_length) {
  counts <- t(t(raw_counts) / avg_mapped_read_length)
  round(counts, 0)
}

# is_paired_end(), compute_scale_factors() and transform_counts(round = TRUE) of recount3
is_paired_end <- function(meta, avg_mapped_read_length = "recount_qc.star.average_mapped_length",
                          avg_read_length = "recount_seq_qc.avg_len") {
  ratio <- round(meta[[avg_mapped_read_length]] / meta[[avg_read_length]], 0)
  ratio[!ratio %in% c(1, 2)] <- NA
  ratio == 2
}

compute_scale_factors <- function(meta, by, targetSize = 4e7, L = 100,
                                  auc = "recount_qc.bc_auc.all_reads_all_bases",
                                  avg_mapped_read_length = "recount_qc.star.average_mapped_length",
                                  mapped_reads = "recount_qc.star.all_mapped_reads") {
  if (by == "auc") {
    targetSize / meta[[auc]]
  } else {
    targetSize * L * ifelse(is_paired_end(meta), 2, 1) / (meta[[mapped_reads]] * meta[[avg_mapped_read_length]]^2)
  }
}

transform_counts <- function(raw_counts, meta, by) {
  scale <- compute_scale_factors(meta, by)
  round(raw_counts * matrix(rep(scale, each = nrow(raw_counts)), ncol = ncol(raw_counts)), 0)
}

# -------------------------------------------------------------------------------------------- annotation

# rtracklayer::import() of the gene GTF, in plain R: one row per gene record, every attribute a column
read_gtf_genes <- function(path, url) {
  check_gzip(path, url)
  gtf <- tryCatch(
    utils::read.delim(path, header = FALSE, sep = "\t", quote = "", comment.char = "#", stringsAsFactors = FALSE,
                      colClasses = "character", na.strings = character()),
    error = function(e) fail(paste0("cannot read the gene annotation GTF: ", conditionMessage(e)), url)
  )
  if (ncol(gtf) != 9) fail(paste0("malformed GTF: ", ncol(gtf), " columns instead of 9"), url)
  gtf <- gtf[gtf[[3]] == "gene", , drop = FALSE]
  if (nrow(gtf) == 0) fail("the GTF holds no gene records", url)
  pieces <- strsplit(gtf[[9]], ";", fixed = TRUE)
  row <- rep(seq_along(pieces), lengths(pieces))
  pieces <- trimws(unlist(pieces, use.names = FALSE))
  keep <- nzchar(pieces)
  row <- row[keep]
  pieces <- pieces[keep]
  key <- sub("[[:space:]].*$", "", pieces)
  value <- gsub('^"|"$', "", sub("^[^[:space:]]+[[:space:]]*", "", pieces))
  genes <- data.frame(gene_id = rep(NA_character_, nrow(gtf)), stringsAsFactors = FALSE)
  for (k in unique(key)) {
    sel <- key == k
    # repeated keys (tag "basic"; tag "CCDS") are joined with commas
    joined <- tapply(value[sel], row[sel], paste, collapse = ",")
    column <- rep(NA_character_, nrow(gtf))
    column[as.integer(names(joined))] <- joined
    genes[[k]] <- column
  }
  if (anyNA(genes$gene_id)) fail("malformed GTF: a gene record has no gene_id", url)
  if (!"bp_length" %in% names(genes)) {
    # recount3's gene GTFs keep each gene's exonic length (bp_length) in the score column
    score <- suppressWarnings(as.numeric(gtf[[6]]))
    if (!all(is.na(score))) genes$bp_length <- score
  }
  genes$seqname <- gtf[[1]]
  genes$start <- as.integer(gtf[[4]])
  genes$end <- as.integer(gtf[[5]])
  genes$strand <- gtf[[7]]
  genes$source <- gtf[[2]]
  if (anyDuplicated(genes$gene_id)) {
    fail(paste0("malformed GTF: duplicated gene_id ", genes$gene_id[duplicated(genes$gene_id)][1]), url)
  }
  first <- intersect(c("gene_id", "gene_name", "gene_type", "bp_length"), names(genes))
  genes[, c(first, setdiff(names(genes), first)), drop = FALSE]
}

# ------------------------------------------------------------------------------------------------- filter

filter_genes <- function(counts, meta, opts) {
  if (opts$filter != "edger" && !is_blank(opts$group)) {
    say("warning: group ", opts$group, " is only used by --filter edger")
  }
  if (opts$filter == "none") return(rep(TRUE, nrow(counts)))
  if (opts$filter == "min_samples") {
    return(rowSums(counts >= opts$min_count) >= opts$min_samples)
  }
  group <- NULL
  if (!is_blank(opts$group)) {
    if (!opts$group %in% colnames(meta)) {
      near <- grep(opts$group, colnames(meta), fixed = TRUE, value = TRUE)
      fail(paste0("group column '", opts$group, "' is not in the sample metadata",
                  if (length(near)) paste0("; did you mean ", paste(head(near, 5), collapse = ", "), "?") else ""))
    }
    group <- as.character(meta[[opts$group]])
    if (anyNA(group)) {
      say("warning: ", sum(is.na(group)), " samples have no value in ", opts$group, "; they form the group 'NA'")
      group[is.na(group)] <- "NA"
    }
    group <- factor(group)
    say("edgeR filterByExpr with group ", opts$group, " (", nlevels(group), " groups)")
  }
  keep <- suppressMessages(edgeR::filterByExpr(counts, group = group, min.count = opts$min_count))
  as.vector(keep)
}

# ------------------------------------------------------------------------------------------------ writing

json_value <- function(x) {
  if (is.list(x) && length(x) == 0) return("[]")
  if (is.null(x) || length(x) == 0) return("null")
  if (length(x) > 1 || is.list(x)) {
    if (!is.null(names(x)) && all(nzchar(names(x)))) {
      keys <- vapply(names(x), json_value, "")
      return(paste0("{\n  ", paste0(keys, ": ", vapply(x, json_value, ""), collapse = ",\n  "), "\n}"))
    }
    return(paste0("[", paste(vapply(x, json_value, ""), collapse = ", "), "]"))
  }
  if (is.na(x)) return("null")
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.numeric(x)) return(format(x, scientific = FALSE, digits = 15, trim = TRUE))
  x <- gsub("\\", "\\\\", as.character(x), fixed = TRUE)
  x <- gsub('"', '\\"', x, fixed = TRUE)
  x <- gsub("\n", "\\n", x, fixed = TRUE)
  x <- gsub("\t", "\\t", x, fixed = TRUE)
  x <- gsub("\r", "\\r", x, fixed = TRUE)
  paste0('"', x, '"')
}

write_tsv <- function(df, path) {
  con <- if (endsWith(path, ".gz")) gzfile(path, "wb") else file(path, "wb")
  on.exit(close(con))
  utils::write.table(df, con, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
}

as_integer_counts <- function(counts) {
  if (any(counts > .Machine$integer.max)) fail("a read count exceeds the 32-bit integer range")
  storage.mode(counts) <- "integer"
  counts
}

count_table <- function(counts) {
  df <- data.frame(gene_id = rownames(counts), counts, check.names = FALSE, stringsAsFactors = FALSE)
  rownames(df) <- NULL
  df
}

# -------------------------------------------------------------------------------------------------- main

run <- function(opts, scratch) {
  home <- project_home(opts$source)
  say("mirror ", opts$mirror, ", organism ", opts$organism, ", ", home, ", annotation ", opts$annotation)

  # 1. metadata (the smallest files, read first as recount3 does)
  meta_urls <- locate_url(opts$mirror, opts$organism, home, opts$project, "metadata")
  if (grepl("^file://", opts$mirror) || !grepl("^[a-z]+://", opts$mirror)) {
    local_dir <- dirname(sub("^file://(localhost)?", "", meta_urls[[1]]))
    if (!dir.exists(local_dir)) {
      fail("project not found on the mirror (no metadata folder)", dirname(meta_urls[[1]]))
    }
  }
  say("reading ", length(meta_urls), " metadata tables")
  meta_paths <- vapply(meta_urls, fetch, "", dir = scratch)
  names(meta_paths) <- names(meta_urls)
  meta <- read_metadata(meta_paths, meta_urls)
  # create_rse_manual(): the gene sums live under the project's file_source
  if ("recount_project.file_source" %in% colnames(meta) && !is.na(meta$recount_project.file_source[1])) {
    home <- meta$recount_project.file_source[1]
  }
  say(nrow(meta), if (nrow(meta) == 1) " sample, " else " samples, ", ncol(meta), " metadata columns")

  # 2. gene annotation
  ann_url <- locate_url_ann(opts$mirror, opts$organism, opts$annotation)
  say("reading the gene annotation ", basename(ann_url))
  genes <- read_gtf_genes(fetch(ann_url, scratch), ann_url)

  # 3. coverage sums
  sums_url <- locate_url(opts$mirror, opts$organism, home, opts$project, "gene", opts$annotation)[[1]]
  say("reading the gene sums ", basename(sums_url))
  sums <- read_gene_sums(fetch(sums_url, scratch), sums_url, opts$annotation)
  missing <- setdiff(meta$external_id, colnames(sums))
  if (length(missing)) {
    fail(paste0("samples of the metadata are missing from the gene sums: ", paste(head(missing, 5), collapse = ", ")),
         sums_url)
  }
  extra <- setdiff(colnames(sums), meta$external_id)
  if (length(extra)) say("warning: ", length(extra), " gene-sums samples without metadata are ignored")
  sums <- sums[, meta$external_id, drop = FALSE]
  say(nrow(sums), " genes x ", ncol(sums), if (ncol(sums) == 1) " sample" else " samples")

  # BigWigURL, as create_rse_manual() adds it (locate_url(type = "bw"))
  nn <- substr(opts$project, nchar(opts$project) - 1, nchar(opts$project))
  meta$BigWigURL <- paste(
    opts$mirror, opts$organism, home, "base_sums", nn, opts$project,
    toupper(substr(meta$external_id, nchar(meta$external_id) - ifelse(grepl("gtex", home), 3, 1),
                   nchar(meta$external_id) - ifelse(grepl("gtex", home), 2, 0))),
    paste0(basename(home), ".base_sums.", opts$project, "_", meta$external_id, ".ALL.bw"),
    sep = "/"
  )

  # 4. coverage sums -> read counts
  aml_col <- "recount_qc.star.average_mapped_length"
  if (!aml_col %in% colnames(meta)) fail(paste0("the metadata have no ", aml_col, " column"), dirname(meta_urls[[1]]))
  aml <- suppressWarnings(as.numeric(meta[[aml_col]]))
  bad <- is.na(aml) | aml <= 0
  if (all(bad)) {
    fail(paste0("no sample has a usable ", aml_col, " (all missing or zero)"), dirname(meta_urls[[1]]))
  }
  if (any(bad)) {
    say("warning: dropping ", sum(bad), " samples without a usable ", aml_col, ": ",
        paste(head(meta$external_id[bad], 10), collapse = ", "))
  }
  dropped <- meta$external_id[bad]
  meta <- meta[!bad, , drop = FALSE]
  sums <- sums[, !bad, drop = FALSE]
  aml <- aml[!bad]
  counts <- as_integer_counts(compute_read_counts(sums, aml))

  # 5. gene annotation aligned with the counts
  m <- match(rownames(counts), genes$gene_id)
  n_unannotated <- sum(is.na(m))
  if (n_unannotated == nrow(counts)) fail("no gene of the gene sums is in the annotation GTF", ann_url)
  if (n_unannotated > 0) {
    say("warning: ", n_unannotated, " of ", nrow(counts), " genes are not in the annotation GTF; ",
        "they are kept with empty annotation (recount3 would refuse this mismatch)")
  }
  gene_table <- genes[m, , drop = FALSE]
  gene_table$gene_id <- rownames(counts)
  rownames(gene_table) <- NULL

  # 6. gene filter
  keep <- filter_genes(counts, meta, opts)
  say("gene filter ", opts$filter, ": ", sum(keep), " of ", length(keep), " genes kept")
  if (!any(keep)) fail(paste0("the ", opts$filter, " gene filter keeps no gene"))

  # 7. write
  out_tmp <- paste0(opts$out, ".tmp-", Sys.getpid())
  unlink(out_tmp, recursive = TRUE)
  if (!dir.create(out_tmp, recursive = TRUE, showWarnings = FALSE)) fail("cannot create the output folder", out_tmp)
  CONTEXT$out_tmp <- out_tmp
  write_tsv(count_table(counts[keep, , drop = FALSE]), file.path(out_tmp, "counts.tsv.gz"))
  write_tsv(meta, file.path(out_tmp, "samples.tsv"))
  write_tsv(gene_table[keep, , drop = FALSE], file.path(out_tmp, "genes.tsv"))
  if (opts$scaled != "none") {
    scaled <- transform_counts(sums[keep, , drop = FALSE], meta, opts$scaled)
    write_tsv(count_table(scaled), file.path(out_tmp, paste0("scaled_counts_", opts$scaled, ".tsv.gz")))
  }
  info <- list(
    project = opts$project, organism = opts$organism, project_home = home, annotation = opts$annotation,
    mirror = opts$mirror, gene_sums_url = sums_url, annotation_url = ann_url, metadata_urls = unname(meta_urls),
    counts = "round(gene_sums / recount_qc.star.average_mapped_length) (recount3 compute_read_counts)",
    samples = nrow(meta), samples_dropped = as.list(dropped), genes_before = nrow(counts),
    genes_after = sum(keep), genes_not_in_annotation = n_unannotated, filter = opts$filter,
    min_count = opts$min_count, min_samples = if (opts$filter == "min_samples") opts$min_samples else NULL,
    group = if (opts$filter == "edger" && !is_blank(opts$group)) opts$group else NULL,
    reads_before = sum(as.numeric(counts)), reads_after = sum(as.numeric(counts[keep, , drop = FALSE])),
    scaled = opts$scaled, r_version = R.version.string,
    edger_version = if (opts$filter == "edger") as.character(utils::packageVersion("edgeR")) else NULL
  )
  info <- info[!vapply(info, is.null, TRUE)]
  writeLines(json_value(info), file.path(out_tmp, "filter.json"))

  if (dir.exists(opts$out)) unlink(opts$out, recursive = TRUE)
  if (!file.rename(out_tmp, opts$out)) fail("cannot move the finished output into place", opts$out)
  CONTEXT$out_tmp <- NULL
  say("wrote ", opts$out, ": ", sum(keep), " genes x ", ncol(counts), " samples")
}

main <- function() {
  in_snakemake <- exists("snakemake")
  log_con <- NULL
  if (in_snakemake && length(snakemake@log) > 0) {
    dir.create(dirname(snakemake@log[[1]]), recursive = TRUE, showWarnings = FALSE)
    log_con <- file(snakemake@log[[1]], open = "wt")
    sink(log_con, type = "message")
  }
  scratch <- tempfile("recount3-")
  dir.create(scratch)
  status <- 0
  tryCatch(
    {
      opts <- if (in_snakemake) from_snakemake(snakemake) else parse_cli(commandArgs(trailingOnly = TRUE))
      opts <- check_options(opts)
      if (opts$filter == "edger" && !requireNamespace("edgeR", quietly = TRUE)) {
        fail("the edgeR package is not installed (Debian: r-bioc-edger)")
      }
      run(opts, scratch)
    },
    error = function(e) {
      status <<- 1
      what <- gsub("[\r\n]+", " ", conditionMessage(e))
      if (!inherits(e, "recount3_failure")) what <- paste("unexpected error:", what)
      text <- paste0("recount3 ERROR: ", if (!is.na(CONTEXT$project)) paste0("project ", CONTEXT$project, ": "), what)
      message(text)
      if (!is.null(log_con)) {
        sink(type = "message")
        close(log_con)
        log_con <<- NULL
        message(text)
      }
    }
  )
  if (!is.null(CONTEXT$out_tmp)) unlink(CONTEXT$out_tmp, recursive = TRUE)
  unlink(scratch, recursive = TRUE)
  if (!is.null(log_con)) {
    sink(type = "message")
    close(log_con)
  }
  if (status != 0) quit(save = "no", status = status)
}

main()
