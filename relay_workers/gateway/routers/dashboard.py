"""The dashboard: a page at / (static/dashboard.html) whose script (static/dashboard.js) polls /v1/fleet
with the gateway's bearer token, which it asks for and keeps in the tab's sessionStorage. The page and its
files hold no data of the fleet, so they are served without the token, and left out of the OpenAPI schema;
everything they show comes from the guarded JSON routes (routers/overview.py)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/dashboard/assets"
STATIC = files("relay_workers.gateway") / "static"
# The page runs only its own files, talks only to this gateway, and cannot be framed.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


def assets() -> StaticFiles:
    """The dashboard's script and style sheet, for the app to mount at ASSETS."""
    return StaticFiles(directory=str(STATIC))


@router.get("/")
async def dashboard() -> HTMLResponse:
    """The live fleet dashboard (no data in the page itself: its script reads /v1/fleet with the token)."""
    return HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"),
                        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})
