"""The dashboard's web server: a WSGI application on the standard library's server, on 127.0.0.1 only.

    GET  /                          the overview (every plan, the last 30 days, storage, what needs attention)
    GET  /backups/{id}              one backup: per-plan results, findings, its snapshot a page at a time
    GET  /backups/{id}/quote        a restore dry run for a prefix (the quote; writes nothing)
    POST /backup                    "Back up now"                (token and same-origin checks)
    POST /backups/{id}/verify       "Verify"                     (token and same-origin checks)
    GET  /verifications/{id}        a verification: running, or what it found
    GET  /static/dashboard.css

Nothing else changes state, and GET never does. A thread per request, so that a long verification does not
hold up the other pages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.dashboard import pages, security
from chalicelib.dashboard.storage import StorageCache
from chalicelib.dashboard.views import Views, stylesheet
from chalicelib.errors import BadRequest, Conflict, NotFound, PlanError, Pruned, Tampered, describe_error
from chalicelib.times import utcnow
from chalicelib.catalog.records import BackupStatus
from chalicelib.verify.record import VerificationStatus

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_FORM_BYTES = 16 * 1024
# While a backup shown on its page is still running, the page reloads itself (no script needed).
REFRESH_SECONDS = 3
SECURITY_HEADERS = [
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
     "base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, list[str]]
    environ: dict[str, Any]


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    location: str | None = None


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _single(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[-1] if found else None


class Dashboard:
    """The WSGI application. `settings` is a `config.Settings` (its worker mode says how "Back up now" runs
    the backup), `clients` an `aws.Clients` with the operator's credentials; `stage` names the stage on the
    page; `local` says the daily schedule does not fire here (the emulator)."""

    ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
        ("GET", re.compile(r"^/$"), "index"),
        ("GET", re.compile(r"^/backups/(?P<backup_id>[^/]+)$"), "backup"),
        ("GET", re.compile(r"^/backups/(?P<backup_id>[^/]+)/quote$"), "quote"),
        ("POST", re.compile(r"^/backup$"), "start"),
        ("POST", re.compile(r"^/backups/(?P<backup_id>[^/]+)/verify$"), "verify"),
        ("GET", re.compile(r"^/verifications/(?P<verification_id>[^/]+)$"), "verification"),
        ("GET", re.compile(r"^/static/dashboard\.css$"), "css"),
    )

    def __init__(self, settings: Any, clients: Any, stage: str, local: bool = False, token: str | None = None) -> None:
        self.settings = settings
        self.clients = clients
        self.stage = stage
        self.local = local
        self.token = token or security.new_token()
        self.views = Views(settings.time_zone)
        self.storage = StorageCache()
        self.hosts: frozenset[str] = frozenset()

    def bind(self, port: int) -> None:
        """The port the server listens on: only requests naming it are answered."""
        self.hosts = security.allowed_hosts(port)

    # ------------------------------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self.handle(environ)
        except HTTPError as exc:
            response = self.error(exc.status, str(exc))
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
        if response.location:
            headers.append(("Location", response.location))
        headers += SECURITY_HEADERS
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [response.body]

    def handle(self, environ: dict[str, Any]) -> Response:
        problem = security.host_problem(environ, self.hosts)
        if problem:
            raise HTTPError(400, problem)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO", "/") or "/"
        allowed = [m for m, pattern, _ in self.ROUTES if pattern.match(path)]
        route = next(((name, p.match(path)) for m, p, name in self.ROUTES if m == method and p.match(path)), None)
        if route is None:
            if path == "/favicon.ico":
                return Response(204, b"", "image/x-icon")
            if allowed:
                raise HTTPError(405, f"{path} takes {' or '.join(sorted(set(allowed)))}, not {method}")
            raise HTTPError(404, f"there is no page at {path}")
        name, match = route
        assert match is not None
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        form: dict[str, list[str]] = {}
        if method == "POST":
            form = self._form(environ)
            problem = security.post_problem(environ, _single(form, security.TOKEN_FIELD), self.token, self.hosts)
            if problem:
                logger.warning("refused %s %s: %s", method, path, problem)
                raise HTTPError(403, f"refused: {problem}")
        request = Request(method, path, query, form, environ)
        try:
            return getattr(self, f"page_{name}")(request, **match.groupdict())
        except (BadRequest, PlanError) as exc:
            raise HTTPError(400, str(exc)) from exc
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from exc
        except (Conflict, Tampered) as exc:
            raise HTTPError(409, str(exc)) from exc
        except Pruned as exc:
            raise HTTPError(410, str(exc)) from exc
        except (ClientError, BotoCoreError) as exc:
            logger.warning("AWS refused %s %s: %s", method, path, exc)
            raise HTTPError(502, f"AWS answered: {describe_error(exc)} (docs/dashboard.md lists the permissions it needs)") from exc

    def _form(self, environ: dict[str, Any]) -> dict[str, list[str]]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HTTPError(400, "Content-Length is not a number") from None
        if length > MAX_FORM_BYTES:
            raise HTTPError(413, f"a form of {length} bytes is larger than this dashboard accepts ({MAX_FORM_BYTES})")
        kind = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if length and kind != "application/x-www-form-urlencoded":
            raise HTTPError(415, f"the dashboard's buttons send forms (application/x-www-form-urlencoded), not {kind!r}")
        raw = environ["wsgi.input"].read(length) if length else b""
        return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)

    # ------------------------------------------------------------------------------------------ pages

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        now = utcnow()
        context.setdefault("refresh", None)
        body = self.views.render(
            template, now=now, stage=self.stage, local=self.local, token=self.token,
            zone_caption=self.views.caption(now), **context,
        )
        return Response(status, body.encode("utf-8"))

    def error(self, status: int, message: str) -> Response:
        try:
            return self.render("error.html", status=status, code=status, phrase=HTTPStatus(status).phrase, message=message)
        except Exception:  # a broken template must still give an answer
            logger.exception("could not render the error page")
            return Response(status, f"{status}: {message}".encode(), "text/plain; charset=utf-8")

    def page_index(self, request: Request) -> Response:
        return self.render("index.html", **pages.index(self.settings, self.clients, utcnow(), self.storage))

    def page_backup(self, request: Request, backup_id: str) -> Response:
        data = pages.backup(self.settings, self.clients, backup_id, request.query)
        running = data["b"]["status"] == BackupStatus.RUNNING
        return self.render("backup.html", refresh=REFRESH_SECONDS if running else None, **data)

    def page_quote(self, request: Request, backup_id: str) -> Response:
        return self.render("quote.html", backup_id=backup_id, **pages.quote(self.settings, self.clients, backup_id, request.query, self.stage))

    def page_start(self, request: Request) -> Response:
        plans = [name for name in request.form.get("plans", []) if name]
        backup_id = pages.start(self.settings, self.clients, plans)
        # Post/redirect/get: reloading the backup's page never starts another backup.
        return Response(303, b"", location=f"/backups/{quote(backup_id)}")

    def page_verify(self, request: Request, backup_id: str) -> Response:
        form = {k: v[-1] for k, v in request.form.items()}
        verification_id = pages.verify(self.settings, self.clients, backup_id, form)
        # As POST /backups/{id}/verify answers 202 with its Location: the check runs in the verify worker.
        return Response(303, b"", location=f"/verifications/{quote(verification_id)}")

    def page_verification(self, request: Request, verification_id: str) -> Response:
        data = pages.verification(self.settings, self.clients, verification_id)
        refresh = REFRESH_SECONDS if data["status"] == VerificationStatus.RUNNING else None
        return self.render("verify.html", refresh=refresh, r=data)

    def page_css(self, request: Request) -> Response:
        return Response(200, stylesheet(), "text/css; charset=utf-8")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
        logger.info("%s %s", self.address_string(), format % args)


def make(dashboard: Dashboard, port: int = 0) -> WSGIServer:
    """A server for `dashboard` on 127.0.0.1:`port` (0: any free port); its port is `server.server_port`."""
    server = make_server(HOST, port, dashboard, server_class=_Server, handler_class=_Handler)
    dashboard.bind(server.server_port)
    return server


def url(server: WSGIServer) -> str:
    return f"http://{HOST}:{server.server_port}/"
