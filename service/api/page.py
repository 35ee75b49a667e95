"""``GET /``: a page to try the service, and ``GET /static/{name}``: its CSS and scripts.

The page holds no data (everything it shows comes from the API, with the key
the user types), so it is open like ``/docs``. It loads nothing from outside
the service and runs under a strict Content-Security-Policy: no inline script
or style, no CDN, no fonts; its script is ES modules from the service itself, which
``script-src 'self'`` allows. The files ship in the package (``service/static``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from service.api.deps import SettingsDep

page_router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files, replaced with the package: revalidate rather than serve a stale page.
    "Cache-Control": "no-cache",
}
# The assets ``/static/`` serves, and nothing else in the folder: the style sheet, and
# the script, ``page.js`` with the ES modules it imports.
_MODULES = ("page", "api", "dom", "state", "model", "video", "request", "results", "jobs")
ASSETS = {
    "page.css": "text/css; charset=utf-8",
    **{f"{name}.js": "text/javascript; charset=utf-8" for name in _MODULES},
}
# The one value the page takes from the server: when to turn segments on by default.
_WINDOW_MARK = "{{segment_window_s}}"


@cache
def asset(name: str) -> str:
    """A file of ``service/static``, read once."""
    return resources.files("service").joinpath("static", name).read_text(encoding="utf-8")


@page_router.get("/", response_class=HTMLResponse)
async def page(settings: SettingsDep) -> HTMLResponse:
    html = asset("index.html").replace(_WINDOW_MARK, f"{settings.segment_window_s:g}")
    return HTMLResponse(html, headers=_HEADERS)


@page_router.get("/static/{name}")
async def static(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return Response(asset(name), media_type=media_type, headers=_HEADERS)
