# Load the Celery app whenever Django starts so that @shared_task declarations
# bind to it and transaction.on_commit publishing finds a configured app.
from config.celery import app as celery_app

__all__ = ("celery_app",)
