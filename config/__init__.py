"""Settings of the Relay fleet (Celery and Redis), with environment overrides."""
