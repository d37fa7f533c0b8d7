"""Celery task declarations: an id in, one domain service called.

Importing this package imports every module in it, so the Celery app finds every task with one
import (CELERY_IMPORTS = ("tasks",)) and a new module needs no list kept by hand.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
