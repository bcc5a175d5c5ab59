"""A study's config file read strictly, before Snakemake's reader keeps the later of two equal keys without a word.

Imported only while the workflow builds the DAG (``rules/common.smk``), never by a rule script: it needs PyYAML,
which Snakemake brings and the rules' conda envs need not.
"""

from __future__ import annotations

import os

import yaml


def duplicate_key_problem(path) -> str | None:
    """The first key that a YAML (or JSON) config file gives twice in one mapping, as one message naming the file,
    the key and both lines; None when every key is given once. YAML parsers keep the later value without a word,
    so a second ``seeds:`` or model block would silently replace the first."""
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path

    def walk(node, where):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    name = key.value
                    if name in seen:
                        full = ".".join(str(p) for p in [*where, name])
                        return (f"config file '{shown}', line {key.start_mark.line + 1}: the key '{full}' is given a "
                                f"second time (first at line {seen[name] + 1}); a YAML reader would keep only the "
                                "later one: remove or merge one of them")  # fmt: skip
                    seen[name] = key.start_mark.line
                found = walk(value, [*where, getattr(key, "value", "?")])
                if found:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                found = walk(item, [*where, i])
                if found:
                    return found
        return None

    try:
        with open(path, encoding="utf-8") as fh:
            root = yaml.compose(fh, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None  # Snakemake reports a missing or unparseable config file itself
    return walk(root, [])
