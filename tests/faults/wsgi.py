"""The API as config/wsgi.py serves it, with the fault suite's test-only job kinds registered
(tests/faults/jobs.py), for a gunicorn that must know those jobs' kinds and queues (the
explain tests ask it why such a job is not running)."""

import importlib

from config.wsgi import application

# After Django is set up (above): the module declares tasks and reads models.
importlib.import_module("tests.faults.jobs")

__all__ = ["application"]
