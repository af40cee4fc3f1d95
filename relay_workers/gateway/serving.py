"""`relay gateway`: the app served by uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

from .app import create_app
from .config import GatewayConfig


def serve(config: GatewayConfig, host: str, port: int) -> None:
    """Serves the gateway with uvicorn until interrupted."""
    import uvicorn
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False,
                timeout_keep_alive=5, timeout_graceful_shutdown=10)


def run_gateway(args: argparse.Namespace) -> int:
    """`relay gateway`: refuses to serve without RELAY_GATEWAY_TOKEN unless --insecure."""
    token = os.environ.get("RELAY_GATEWAY_TOKEN") or None
    if token is None and not args.insecure:
        print("relay gateway: RELAY_GATEWAY_TOKEN is not set; set it (clients then send `Authorization: Bearer "
              "TOKEN`) or pass --insecure to serve without authentication", file=sys.stderr)
        return 2
    if token is None:
        print("relay gateway: --insecure: serving WITHOUT authentication", file=sys.stderr)
    config = GatewayConfig(token, args.timeout, args.read_timeout, args.max_body, os.environ.get("RELAY_BROKER_URL"),
                           os.environ.get("RELAY_RESULT_BACKEND"), os.environ.get("RELAY_STORE_URL"))
    serve(config, args.host, args.port)
    return 0
