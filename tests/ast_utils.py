"""Parsing the project's own source in a test process that may run a Celery worker thread.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state: a
`compile()` in another thread at the same moment (the in-process worker thread creating a
dataclass or a namedtuple runs `exec`) can make `ast.parse` fail with "SystemError: AST
constructor recursion depth mismatch" (python/cpython#106905). The parse is pure: when that
happens it is simply asked again.
"""

from __future__ import annotations

import ast
import time

ATTEMPTS = 5


def parse_source(source: str, filename: str = "<unknown>") -> ast.Module:
    for attempt in range(ATTEMPTS):
        try:
            return ast.parse(source, filename=filename)
        except SystemError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")
