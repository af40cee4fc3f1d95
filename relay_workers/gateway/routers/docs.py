"""The interactive docs: Swagger UI at /docs, its files from the fastapi-offline package, served by the
gateway itself (no CDN: it works offline)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"

router = APIRouter(include_in_schema=False)


def assets() -> StaticFiles:
    """Swagger UI's files, for the app to mount at ASSETS."""
    return StaticFiles(directory=str(files("fastapi_offline") / "static"))


@router.get("/docs")
async def docs() -> Response:
    """Swagger UI, with its files from the fastapi-offline package (it works offline)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Relay gateway",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS}/favicon.png")
