"""What Relay code in a worker prints: kept up to a limit, then a Relay error (a job cannot fill memory)."""

from __future__ import annotations

import io

from relay_lang.errors import RelayError


class CappedOutput(io.StringIO):
    """A StringIO that refuses to grow past `limit` characters with a Relay error of kind "limit"."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > self.limit:
            raise RelayError(f"output limit of {self.limit} characters exceeded (RELAY_OUTPUT_LIMIT)", kind="limit")
        return super().write(text)
