"""The Relay worker fleet (Celery and Redis). Arrives with the fleet issue."""
