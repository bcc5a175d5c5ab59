"""Per rule of a finished workflow run: wall time, peak memory, what the job read, and peak memory against it.

    python benchmarks/rule_resources.py WORKDIR        # the working directory of a snakemake run

Every job that reads cells writes a Snakemake ``benchmark:`` file, ``results/benchmarks/{rule}/{...}.tsv``
(``s``: wall seconds, ``max_rss``: peak resident memory in MiB), and its log, ``logs/{rule}/{...}.log``, at the
same path: ``scmix.rulecall`` logs there what the job's inputs take in memory once read
(``scmix.io.in_memory_bytes``). The table has one row per rule: jobs, total and largest wall seconds, the
largest peak RSS, the inputs of that job, RSS / input, and how many jobs exceed 3 x their inputs + 1 GiB.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

READS = re.compile(r"reads (\d+) input file\(s\), (\d+) bytes")
GIB = 2**30


def jobs(workdir: Path) -> pd.DataFrame:
    """One row per benchmarked job: rule, job (its wildcards' path), seconds, max_rss (bytes), input bytes."""
    rows = []
    for bench in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rel = bench.relative_to(workdir / "results" / "benchmarks")
        table = pd.read_csv(bench, sep="\t")
        log = (workdir / "logs" / rel).with_suffix(".log")
        found = READS.findall(log.read_text()) if log.is_file() else []
        rss = pd.to_numeric(table["max_rss"], errors="coerce").iloc[-1]
        rows.append({
            "rule": rel.parts[0],
            "job": str(Path(*rel.parts[1:]).with_suffix("")),
            "seconds": float(table["s"].iloc[-1]),
            "max_rss": float(rss) * 2**20,
            "input_bytes": float(found[-1][1]) if found else float("nan"),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss", "input_bytes"])


def per_rule(table: pd.DataFrame) -> pd.DataFrame:
    """One row per rule (in the DAG's order where known): the job of the largest peak RSS stands for it."""
    table = table.assign(ratio=table["max_rss"] / table["input_bytes"],
                         over=table["max_rss"] > 3 * table["input_bytes"] + GIB)  # fmt: skip
    out = []
    for rule, group in table.groupby("rule", sort=False):
        peak = group.loc[group["max_rss"].idxmax()]
        out.append({
            "rule": rule, "jobs": len(group), "wall_s_total": group["seconds"].sum(),
            "wall_s_max": group["seconds"].max(), "peak_rss_gib": peak["max_rss"] / GIB,
            "input_gib": peak["input_bytes"] / GIB, "rss_per_input": peak["ratio"],
            "jobs_over_3x_plus_1gib": int(group["over"].sum()),
        })  # fmt: skip
    order = ["parse", "qc", "split", "mix", "train", "train_seeds", "evaluate", "synthetic"]
    out = pd.DataFrame(out)
    return out.sort_values("rule", key=lambda r: r.map({k: i for i, k in enumerate(order)}).fillna(99))


def markdown(table: pd.DataFrame) -> str:
    lines = ["| rule | jobs | wall s (all jobs) | wall s (largest job) | peak RSS GiB | its inputs GiB | RSS ÷ input "
             "| jobs > 3× input + 1 GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in table.itertuples():
        lines.append(f"| {r.rule} | {r.jobs} | {r.wall_s_total:.1f} | {r.wall_s_max:.1f} | {r.peak_rss_gib:.2f} | "
                     f"{r.input_gib:.3f} | {r.rss_per_input:.1f} | {r.jobs_over_3x_plus_1gib} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python benchmarks/rule_resources.py WORKDIR", file=sys.stderr)
        return 2
    workdir = Path(args[0])
    table = jobs(workdir)
    if table.empty:
        print(f"benchmarks/rule_resources.py: no benchmark files under {workdir}/results/benchmarks; run the "
              f"workflow there first", file=sys.stderr)  # fmt: skip
        return 1
    print(markdown(per_rule(table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
