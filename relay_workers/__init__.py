"""The Relay worker fleet: `celery -A relay_workers worker -Q 'relay.*'` (the app is relay_workers.celery.app).

`RelayClient` is the producer API; importing it loads neither the worker nor LLVM.
"""

from .client import EvalResult, RelayClient

__all__ = ["RelayClient", "EvalResult"]
