"""What keeps other web sites out of a dashboard that runs with the operator's credentials on 127.0.0.1.

- Every request must name this server in its Host header (127.0.0.1:<port> or localhost:<port>): a page
  elsewhere that rebinds its own DNS name to 127.0.0.1 can reach the port, but its requests carry its own
  host name, so it can neither read the pages nor post to them.
- Only two requests change anything, both POST: "Back up now" and "Verify". Each must carry the page's token
  (a secret made when the server starts, in a hidden form field or the X-Dashboard-Token header, compared
  in constant time), and, where the browser says where the request comes from (Origin, Sec-Fetch-Site,
  Referer), it must come from this server. Another site cannot read a page, so it cannot learn the token.
- GET never changes state.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

TOKEN_FIELD = "token"
TOKEN_HEADER = "HTTP_X_DASHBOARD_TOKEN"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def allowed_hosts(port: int) -> frozenset[str]:
    """The Host values a browser sends to this server (the port is left out only for port 80)."""
    names = ("127.0.0.1", "localhost")
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= set(names)
    return frozenset(hosts)


def host_problem(environ: Mapping[str, str], hosts: Iterable[str]) -> str | None:
    """None when the request names this server; else what is wrong."""
    host = environ.get("HTTP_HOST", "")
    if host.lower() not in hosts:
        return f"this dashboard answers only at {', '.join(sorted(hosts))}, not at Host {host!r}"
    return None


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def post_problem(environ: Mapping[str, str], form_token: str | None, token: str, hosts: Iterable[str]) -> str | None:
    """None when a state-changing request comes from this dashboard's own page; else why it is refused."""
    origins = {f"http://{host}" for host in hosts}
    fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
    if fetch_site is not None and fetch_site != "same-origin":
        return f"the request comes from another site (Sec-Fetch-Site: {fetch_site})"
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        if origin.lower() not in origins:
            return f"the request comes from another origin ({origin!r})"
    elif environ.get("HTTP_REFERER"):
        referer = _origin_of(environ["HTTP_REFERER"])
        if referer not in origins:
            return f"the request comes from another page ({referer or 'unreadable Referer'})"
    given = form_token if form_token is not None else environ.get(TOKEN_HEADER)
    if not given:
        return "the request carries no page token: use the buttons on the dashboard's pages"
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        return "the page token is wrong or from an earlier run of the dashboard: reload the page and try again"
    return None
