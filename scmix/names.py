"""The names of datasets, mixes, models and sweeps: they become folder and file names (resources/raw/{dataset},
results/models/{model}/{mix}/...), so no separators and no leading dot: never '.', '..' or a hidden name.

schemas/config.schema.yaml (definitions/name) holds the same pattern; tests/workflow/test_bad_input.py checks that."""

import re

# at most 64 characters: a sweep point's name joins two names ({sweep}+{added}-s{pct}) and a file name holds one
# next to a suffix ({eval_set}.summary.tsv), all within the file systems' 255-byte file name
NAME_MAX = 64
NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_+-]{{0,{NAME_MAX - 1}}}$"
NAME_RULE = (
    f"a letter or digit, then letters, digits, '_', '+' or '-' (no dots, no slashes), {NAME_MAX} characters at most"
)
NAME = re.compile(NAME_PATTERN)
