"""Links in emails: open pixel, click redirects, unsubscribe (page and RFC 8058
one-click). All signed; none needs a cookie or a key."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import openapi, tracking
from .common import services

_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
           f"<title>{html.escape(title)}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;"
           f"margin:15vh auto;padding:0 1rem;color:#222}}button{{font:inherit;padding:.5rem 1.2rem;"
           f"border-radius:6px;border:1px solid #888;background:#111;color:#fff;cursor:pointer}}</style>"
           f"<h1>{html.escape(title)}</h1>{body}</html>")
    return HTMLResponse(doc, status_code=status, headers=_NO_STORE)


async def open_pixel(request: Request) -> Response:
    svc = services(request)
    claims = tracking.verify_link(svc.signing_secret, request.path_params["token"])
    if claims is not None and claims.kind == "open":
        await svc.store.advance_status(claims.message_id, "opened", svc.clock.now_ms(), "email opened")
    # The pixel is served either way: a broken image helps nobody.
    return Response(_GIF, media_type="image/gif", headers=_NO_STORE)


async def click(request: Request) -> Response:
    svc = services(request)
    claims = tracking.verify_link(svc.signing_secret, request.path_params["token"])
    if claims is None or claims.kind != "click":
        return _page("Link not valid", "<p>This link is damaged or was not made by us.</p>", status=404)
    await svc.store.advance_status(claims.message_id, "clicked", svc.clock.now_ms(), claims.extra)
    return RedirectResponse(claims.extra, status_code=302, headers=_NO_STORE)


async def unsubscribe(request: Request) -> Response:
    svc = services(request)
    token = request.path_params["token"]
    claims = tracking.verify_link(svc.signing_secret, token)
    if claims is None or claims.kind != "unsub":
        return _page("Link not valid", "<p>This unsubscribe link is damaged or was not made by us.</p>", status=404)
    message = await svc.store.get_message(claims.message_id)
    category = message.category if message else "transactional"
    what = "these emails" if category == "transactional" else f"{category.replace('_', ' ')} emails"
    if request.method == "GET":
        # GET never unsubscribes: link scanners and previews follow GETs.
        return _page("Unsubscribe?", f"<p>Stop receiving {html.escape(what)}?</p>"
                     f"<form method=post action='/u/{html.escape(token)}'><button>Unsubscribe</button></form>")
    # POST: the page's button, or a mail client's RFC 8058 one-click request.
    patch = ({"channels": {"email": False}} if category == "transactional"
             else {"categories": {category: False}})
    await svc.store.set_preferences(claims.extra, patch, svc.clock.now_ms())
    await svc.store.note_unsubscribed(claims.message_id, svc.clock.now_ms(), f"unsubscribed from {what}")
    return _page("You are unsubscribed", f"<p>You will not receive {html.escape(what)} any more.</p>")


openapi.document(
    openapi.Endpoint("GET", "/t/o/{token}.gif", "Email open pixel (signed link)", "none"),
    openapi.Endpoint("GET", "/t/c/{token}", "Email click redirect (signed link)", "none", status=302),
    openapi.Endpoint("GET", "/u/{token}", "Unsubscribe page (signed link; asks, does not act)", "none"),
    openapi.Endpoint("POST", "/u/{token}", "Unsubscribe (the page's button, or RFC 8058 one-click)", "none"),
)

routes = [
    Route("/t/o/{token}.gif", open_pixel, methods=["GET"]),
    Route("/t/c/{token}", click, methods=["GET"]),
    Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
]
