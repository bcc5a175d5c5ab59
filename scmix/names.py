"""The names of datasets, mixes, models and sweeps: they become folder and file names (resources/raw/{dataset},
results/models/{model}/{mix}/...), so no separators and no leading dot: never '.', '..' or a hidden name.

schemas/config.schema.yaml (definitions/name) holds the same pattern; tests/test_bad_input.py checks that."""

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_+-]*$"
NAME_RULE = "a letter or digit, then letters, digits, '_', '+' or '-' (no dots, no slashes)"
NAME = re.compile(NAME_PATTERN)
