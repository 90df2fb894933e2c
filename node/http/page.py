"""The search page (GET / and /static/*): files shipped inside the package (node/http/static), read once, served
as they are. No build step, no template: the page is static and asks the API for everything with fetch().

It must never interpolate anything into these files, and never let a page load a script from elsewhere: the
Content-Security-Policy allows scripts and styles from this origin only (fetch() may reach the other nodes).
"""

from __future__ import annotations

from importlib import resources

from node.http.server import Response

# path -> (file in node/http/static, content type)
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' http: https:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_bodies = {path: (resources.files("node.http") / "static" / name).read_bytes() for path, (name, _) in STATIC_FILES.items()}


def static_response(path: str) -> Response:
    """A fresh Response for one of STATIC_FILES (a new headers list each time: callers append to it)."""
    _name, ctype = STATIC_FILES[path]
    headers = [
        ("cache-control", "no-cache"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ]
    if ctype.startswith("text/html"):
        headers += [("content-security-policy", CSP), ("x-frame-options", "DENY")]
    return Response(200, _bodies[path], ctype, headers)
