"""Fixtures shared by the fuzz tests, and the per-operation case counts printed at the end."""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches (unicode tables, constants from the source) in ./.hypothesis even with
# database=None; keep them out of the project, in the temp directory (unless the caller chose).
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "conveyor-fuzz-hypothesis"))

# Filled by test_openapi_fuzz.py: (operation label, test variant) -> outcome -> cases, where an
# outcome is "<status>" or "<status> <error code>" (plus " known:<finding>" for known bugs).
FUZZ_CASES: defaultdict[tuple[str, str], Counter] = defaultdict(Counter)

# Throttling is per API key; fuzzing sends thousands of requests with one key, so the limits
# are lifted for every fuzz test (setting it is harmless where throttling does not exist).
UNTHROTTLED = {"publish": "1000000/m", "read": "1000000/m", "write": "1000000/m"}


@pytest.fixture(autouse=True)
def _unthrottled(settings):
    settings.API_THROTTLE_RATES = dict(UNTHROTTLED)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FUZZ_CASES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("schemathesis cases per operation")
    per_operation: Counter = Counter()
    for label, variant in sorted(FUZZ_CASES, key=lambda k: (k[0].split(" ", 1)[1], k)):
        outcomes = FUZZ_CASES[(label, variant)]
        count = sum(outcomes.values())
        per_operation[label] += count
        spread = ", ".join(f"{outcome} x{n}" for outcome, n in sorted(outcomes.items()))
        write(f"{label:<36} {variant:<9} {count:>4} cases  ({spread})")
    write("")
    for label, count in sorted(per_operation.items(), key=lambda i: (i[0].split(" ", 1)[1], i)):
        write(f"{label:<36} {count:>4} cases in all")
    write(f"{'total':<36} {sum(per_operation.values()):>4} cases over "
          f"{len(per_operation)} operations")
