"""The Relay worker fleet: `celery -A relay_workers worker -Q 'relay.*'`.

`relay_workers.app` is the Celery app; `RelayClient` is the producer API.
"""

from .app import app
from .client import EvalResult, RelayClient

__all__ = ["app", "RelayClient", "EvalResult"]
