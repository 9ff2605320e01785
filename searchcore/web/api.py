"""The JSON API, health and metrics, with the Gradio UI mounted on the same FastAPI app.

One uvicorn server serves it all: /api/* (JSON), /healthz, /metrics, /docs (OpenAPI) and the UI at /.
Routes only parse input, check access and call the Engine; SearchcoreErrors become HTTP statuses here.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, Literal

import gradio as gr
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from searchcore import __version__
from searchcore.config import validate_library
from searchcore.engine import Engine
from searchcore.errors import (
    AccessError,
    BackendUnavailableError,
    LibraryError,
    LibraryLockedError,
    MassRemovalError,
    OriginalUnavailableError,
    QueryError,
    SearchcoreError,
    VideoUnavailableError,
)
from searchcore.query import understand as read_query
from searchcore.search import MAX_TOP_K, Mode, SearchResult, parse_query_id
from searchcore.sources.imaging import mime_type
from searchcore.stores.filters import Filters
from searchcore.web.auth import Access
from searchcore.web.metrics import CONTENT_TYPE, Metrics
from searchcore.web.ranges import serve_file, video_type
from searchcore.web.seed_api import install as install_seed_routes

log = logging.getLogger(__name__)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
GIVEN_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
GRACE_SECONDS = 5
# Shared without --auth, uploads are only for search by image: one small query image, a few a minute.
SHARED_UPLOAD_BYTES = 5 * 2**20
SHARED_UPLOADS_PER_MINUTE = 10
SHARED_UPLOADS_PER_MINUTE_IN_ALL = 30
GRADIO_UPLOAD = "/gradio_api/upload"


class SearchRequest(BaseModel):
    """A text search."""

    text: str = Field(description="the description to search for, e.g. 红色的圆形")
    top_k: int = Field(10, ge=1, le=MAX_TOP_K, description="number of results")
    offset: int = Field(0, ge=0, le=MAX_TOP_K - 1, description="skip this many results first (paging)")
    library: str | None = Field(None, description="library name (default: the server's --library)")
    folder: str | None = Field(None, description="only images under this folder of the ingested folder")
    since: str | None = Field(None, description="only images taken on or after this date, YYYY-MM-DD")
    until: str | None = Field(None, description="only images taken on or before this date, YYYY-MM-DD")
    mode: Mode | None = Field(
        None, description="semantic, keyword or hybrid (default: hybrid when the library has text)")
    min_similarity: float | None = Field(None, ge=-1, le=1, description="leave out images whose similarity "
                                         "(cosine) to the query is below this")
    exclude: str | None = Field(None, description="leave out images whose words hold one of these words "
                                "(space- or comma-separated) and push down those that look like them")
    media: Literal["image", "video", "all"] = Field(
        "all", description="pictures only, moments of videos only, or both ranked together")
    literal: bool = Field(False, description="search the text as typed: no quoted words that must appear, no "
                          "time words read as dates")
    cutoff: Literal["auto"] | None = Field(None, description="auto: only the hits above a cut chosen from this "
                                           "query's own similarities")
    sort: Literal["relevance", "newest", "oldest"] = Field(
        "relevance", description="order of the hits returned: by relevance, or by date taken (undated last)")
    collapse: bool = Field(False, description="fold near-identical pictures into the best-ranked one, listed in "
                           "its similar")


class UnderstandRequest(BaseModel):
    """A query to read as search reads it."""

    text: str = Field(description="the query, e.g. 去年夏天海边的日落")


class Understanding(BaseModel):
    """How a query is read: the text left for the encoder, the inclusive dates, the quoted and excluded words."""

    text: str
    since: str | None = Field(None, description="YYYY-MM-DD, inclusive")
    until: str | None = Field(None, description="YYYY-MM-DD, inclusive")
    phrases: list[str]
    exclude: list[str]


class VideoLink(BaseModel):
    """Where a moment of a video is: its file, the segment in seconds, and the URL that streams the file."""

    path: str
    start: float
    end: float
    url: str = Field(description="the video file, served with HTTP Range requests; a player starts at "
                                 "url#t=start,end")


class Hit(BaseModel):
    """One result; url fetches the image (for a moment of a video, its best frame's thumbnail)."""

    image_id: int
    score: float
    url: str
    rank: int
    captions: list[str]
    path: str | None = None
    taken: str | None = None
    text: str | None = None
    similarity: float | None = Field(None, description="cosine of the image and the query (by meaning)")
    keyword_score: float | None = Field(None, description="BM25 of the image's words, when they matched")
    media: Literal["image", "video"] = "image"
    video: VideoLink | None = Field(None, description="for a moment of a video: the video and the segment")
    text_match: bool = Field(False, description="its words (captions or OCR) hold the whole query, or each of its "
                             "words")
    similar: list[int] = Field(default_factory=list, description="with collapse: the near-identical pictures "
                               "folded into this one")


class IngestRequest(BaseModel):
    """An ingest of a folder on the server: a Chinese-CLIP dataset (with split) or a folder of images."""

    path: str
    split: str | None = None
    library: str | None = None
    sync: bool = False
    allow_mass_removal: bool = False
    ocr: bool = False


class ReindexRequest(BaseModel):
    """A move of a library to another model."""

    model: str = Field(description="the model to encode the library's pictures with: a name (RN50, ViT-B-16, ...) "
                                   "or a checkpoint path on the server")


MountUI = Callable[[FastAPI, Engine, Access, Metrics], FastAPI]
BASIC = HTTPBasic(auto_error=False)


def create_app(engine: Engine, access: Access | None = None, metrics: Metrics | None = None, *,
               mount_ui: MountUI | None = None) -> FastAPI:
    """The FastAPI app: JSON routes, /healthz, /metrics, and the Gradio UI mounted at /."""
    access = access or Access()
    metrics = metrics or Metrics()
    api = FastAPI(title="searchcore", version=__version__, summary="Chinese text-to-image search (以文搜图)",
                  docs_url="/docs", redoc_url=None)
    api.state.engine, api.state.access, api.state.metrics = engine, access, metrics  # what the routes depend on
    if access.share and not access.users:
        api.add_middleware(SharedUploadGuard)
    api.add_middleware(RequestIdMiddleware)
    api.add_exception_handler(SearchcoreError, _searchcore_error)  # type: ignore[arg-type]
    api.add_exception_handler(_Refusal, _refusal)  # type: ignore[arg-type]
    api.include_router(search_routes)
    api.include_router(library_routes)
    install_seed_routes(api, engine, metrics, reader=functools.partial(check_read, access),
                        writer=functools.partial(check_write, access))
    api.include_router(operation_routes)
    # The UI is passed in (app.py passes searchcore.web.ui.layout.mount), so this front end imports no other.
    return mount_ui(api, engine, access, metrics) if mount_ui is not None else api


def check_read(access: Access, credentials: HTTPBasicCredentials | None) -> None:
    """With --auth the whole app is private: the UI behind Gradio's login, the API behind basic auth."""
    if access.users:
        _authenticate(access, credentials)


def check_write(access: Access, credentials: HTTPBasicCredentials | None) -> None:
    """Writes are refused while access has a refusal (--read-only, a share link without --auth); with --auth
    they need a sign-in too."""
    if access.refusal:
        raise HTTPException(403, str(AccessError("writes_disabled", reason=access.refusal)))
    if access.users:
        _authenticate(access, credentials)


# What a route depends on: the app's own engine, access and metrics (create_app puts them on app.state).
async def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _access(request: Request) -> Access:
    return request.app.state.access


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


TheEngine = Annotated[Engine, Depends(_engine)]
TheAccess = Annotated[Access, Depends(_access)]
TheMetrics = Annotated[Metrics, Depends(_metrics)]
Credentials = Annotated[HTTPBasicCredentials | None, Depends(BASIC)]


def reader(access: TheAccess, credentials: Credentials) -> None:
    check_read(access, credentials)


def writer(access: TheAccess, credentials: Credentials) -> None:
    check_write(access, credentials)


search_routes = APIRouter()
library_routes = APIRouter()
operation_routes = APIRouter()


@search_routes.post("/api/search", response_model=list[Hit], dependencies=[Depends(reader)], tags=["search"])
def search(body: SearchRequest, engine: TheEngine, access: TheAccess, metrics: TheMetrics) -> list[Hit]:
    """Top-k images for a description."""
    library = _library(body.library or engine.settings.library)
    filters = Filters.parse(body.folder, body.since, body.until, body.media)
    with metrics.search("text"):
        results = engine.search_text(body.text, body.top_k, library, offset=body.offset,
                                     filters=filters or None, mode=body.mode,
                                     min_similarity=body.min_similarity, exclude=body.exclude,
                                     literal=body.literal, cutoff=body.cutoff, sort=body.sort,
                                     collapse=body.collapse)
    return [_hit(r, library, access) for r in results]


@search_routes.post("/api/understand", response_model=Understanding, dependencies=[Depends(reader)],
                    tags=["search"])
def understand(body: UnderstandRequest) -> Understanding:
    """How a search reads a query, relative to the server's local date."""
    return Understanding(**read_query(body.text).to_json())


@search_routes.get("/api/images/{library}/{image_id:path}", dependencies=[Depends(reader)], tags=["search"],
                   response_class=Response, responses={200: {"content": {"image/*": {}}}})
def image(library: str, image_id: str, engine: TheEngine, metrics: TheMetrics) -> Response:
    """One image's original bytes, with its content type; a folder picture's are read from its file, after
    checking that it is still the picture indexed (404 when it is gone, 410 when it changed)."""
    name = _library(library)
    ident = parse_query_id(image_id)  # a QueryError: 400, with its kind
    try:
        with metrics.backend("get image"):
            stored = engine.original(ident, name)
    except OriginalUnavailableError as exc:
        raise _Refusal(410 if exc.changed else 404, exc) from None
    except QueryError as exc:
        raise _Refusal(404, exc) from None
    return Response(stored.data, media_type=mime_type(stored.format),
                    headers={"X-Content-Type-Options": "nosniff"})


@search_routes.head("/api/videos/{video_id}", include_in_schema=False)  # the GET's headers: one operation in the docs
@search_routes.get("/api/videos/{video_id}", tags=["search"], response_class=Response,
                   responses={200: {"content": {"video/*": {}}}, 206: {"description": "the byte range asked for"},
                              416: {"description": "a byte range the file does not have"}})
def video(video_id: str, request: Request, engine: TheEngine, access: TheAccess, metrics: TheMetrics,
          credentials: Credentials, library: str | None = None, token: str | None = None) -> Response:
    """A video file, read from its folder after checking it is the file indexed (404 when it is gone, 410 when
    it changed), whole or the byte range a Range header asks for (206), so that a player can seek.
    With --auth: basic auth, or the token of a link the UI made."""
    if access.users and token is None:
        _authenticate(access, credentials)
    name = _library(library or engine.settings.library)
    ident = parse_query_id(video_id)  # a QueryError: 400, with its kind
    if access.users and token is not None and not access.video_token_valid(token, name, ident):
        raise HTTPException(401, str(AccessError("video_link_expired")),
                            headers={"WWW-Authenticate": 'Basic realm="searchcore"'})
    try:
        with metrics.backend("get video"):
            path = engine.video_file(ident, name)
        try:
            return serve_file(path, video_type(path), request.headers, head=request.method == "HEAD")
        except OSError:  # gone since it was checked a moment ago
            raise VideoUnavailableError(ident, path.name, changed=False) from None
    except VideoUnavailableError as exc:
        raise _Refusal(410 if exc.changed else 404, exc) from None
    except QueryError as exc:
        if exc.kind != "range_unsatisfiable":
            raise _Refusal(404, exc) from None
        response = _error_response(exc, 416)
        response.headers["Content-Range"] = f"bytes */{exc.params['size']}"
        return response


@library_routes.get("/api/libraries", dependencies=[Depends(reader)], tags=["libraries"])
def libraries(engine: TheEngine, metrics: TheMetrics) -> list[dict[str, Any]]:
    """Every library: image count, model, dimension and backends."""
    with metrics.backend("libraries"):
        return [info.to_json() for info in engine.libraries()]


@library_routes.post("/api/ingest", dependencies=[Depends(writer)], tags=["libraries"])
def ingest(body: IngestRequest, engine: TheEngine, metrics: TheMetrics) -> dict[str, Any]:
    """Ingest a dataset split or an image folder on the server; returns the ingest report."""
    library = _library(body.library or engine.settings.library)
    with metrics.backend("ingest"):
        report = engine.ingest(body.path, split=body.split, library=library, sync=body.sync,
                               ocr=body.ocr, allow_mass_removal=body.allow_mass_removal)
    metrics.ingested(report)
    return report.to_json()


@library_routes.delete("/api/libraries/{library}", dependencies=[Depends(writer)], tags=["libraries"])
def drop(library: str, engine: TheEngine, metrics: TheMetrics) -> dict[str, Any]:
    """Delete a library from both stores."""
    name = _library(library)
    with metrics.backend("drop"):
        engine.drop(name)
    return {"library": name, "dropped": True}


@library_routes.post("/api/libraries/{library}/reindex", dependencies=[Depends(writer)], tags=["libraries"],
                     status_code=202)
def reindex(library: str, body: ReindexRequest, engine: TheEngine) -> dict[str, Any]:
    """Start moving a library to another model: its pictures are encoded again beside the old collection, which
    keeps answering searches, then the library switches in one step. Returns the progress (as GET does)."""
    return engine.start_reindex(body.model, _library(library)).to_json()


@library_routes.get("/api/libraries/{library}/reindex", dependencies=[Depends(reader)], tags=["libraries"])
def reindex_progress(library: str, engine: TheEngine) -> dict[str, Any]:
    """The library's reindex under way (or the last one): state, done/total, eta_seconds, a progress line and,
    once done, the report."""
    name = _library(library)
    status = engine.reindex_status(name)
    if status is None:
        raise _Refusal(404, QueryError("reindex_none", library=name))
    return status.to_json()


@operation_routes.get("/healthz", tags=["operations"])
def healthz(engine: TheEngine) -> JSONResponse:
    """200 when both stores answer, else 503 with the reason."""
    problems = engine.health()
    if problems:
        return JSONResponse({"status": "unavailable", "reason": "; ".join(problems)}, status_code=503)
    return JSONResponse({"status": "ok"})


@operation_routes.get("/metrics", tags=["operations"], response_class=Response)
def prometheus(metrics: TheMetrics) -> Response:
    """Prometheus metrics: search latency, ingest counts, backend errors."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)


def serve(engine: Engine, access: Access, *, host: str = "127.0.0.1", port: int = 7860,
          mount_ui: MountUI | None = None) -> None:
    """Serve the app until interrupted; with access.share, also open a public Gradio share link."""
    for warning in exposure_warnings(host, access):
        log.warning("%s", warning)
    app = create_app(engine, access, mount_ui=mount_ui)
    # Browsers hold event streams open; without a grace limit, Ctrl+C would wait for every tab to close.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=GRACE_SECONDS))
    if access.share and hasattr(app.state, "blocks"):
        threading.Thread(target=_share, args=(server, app.state.blocks, host, port), daemon=True).start()
    log.info("serving on http://%s:%d (UI at /, API docs at /docs)", _url_host(host), port)
    server.run()


def exposure_warnings(host: str, access: Access) -> list[str]:
    """What to warn about before serving: a bind beyond localhost, or a share link with writes open."""
    notes = []
    if host not in LOCAL_HOSTS:
        open_writes = access.refusal is None and not access.users
        notes.append(f"listening on {host}: reachable beyond this machine" + (
            "; anyone who can reach it can ingest and drop libraries (add --auth or --read-only)"
            if open_writes else ""))
    if access.share and access.refusal is None:
        notes.append("shared publicly with ingest and drop open to the --auth users")
    return notes


class RequestIdMiddleware:
    """Give each HTTP request an id (the caller's X-Request-ID when sane), echo it, and log API requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if GIVEN_REQUEST_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            if path.startswith("/api/"):
                log.info("%s %s %d %.1fms", scope.get("method"), path, status, 1000 * (time.perf_counter() - started))
            REQUEST_ID.reset(token)


class SharedUploadGuard:
    """For an app shared without --auth: Gradio's upload route takes what search by image needs, one small
    query image, a few a minute from each client and in all; any other file upload is refused."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.recent: dict[str, deque[float]] = {}  # client → times of its uploads in the last minute
        self.recent_in_all: deque[float] = deque()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            if scope["path"].rstrip("/") == GRADIO_UPLOAD:
                refusal = self._check_upload(scope, headers)
            elif headers.get(b"content-type", b"").lower().startswith(b"multipart/"):
                refusal = (403, "file uploads are disabled: this app is shared publicly without --auth (only a "
                                "query image may be uploaded, to search by image)", {})
            else:
                refusal = None
            if refusal is not None:
                status, detail, extra = refusal
                await JSONResponse({"detail": detail}, status_code=status, headers=extra)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check_upload(self, scope: dict[str, Any], headers: dict[bytes, bytes],
                      ) -> tuple[int, str, dict[str, str]] | None:
        length = headers.get(b"content-length", b"")
        if not length.isdigit():
            return 411, "send the upload with a Content-Length", {}
        if int(length) > SHARED_UPLOAD_BYTES:
            return 413, (f"an upload may be at most {SHARED_UPLOAD_BYTES // 2**20} MB (one query image) while this "
                         "app is shared publicly without --auth"), {}
        now = time.monotonic()
        client = _client_address(scope, headers)
        mine = self.recent.get(client, deque())
        for times, limit, whose in ((mine, SHARED_UPLOADS_PER_MINUTE, "from one client"),
                                    (self.recent_in_all, SHARED_UPLOADS_PER_MINUTE_IN_ALL, "in all")):
            while times and times[0] <= now - 60:
                times.popleft()
            if len(times) >= limit:
                wait = max(1, math.ceil(times[0] + 60 - now))
                return 429, (f"at most {limit} uploads a minute {whose} while this app is shared publicly "
                             f"without --auth; try again in {wait} s"), {"Retry-After": str(wait)}
        mine.append(now)
        self.recent_in_all.append(now)
        # Clients with no upload in the last minute are forgotten, so at most the in-all limit are remembered.
        self.recent = {c: t for c, t in self.recent.items() if t and t[-1] > now - 60}
        self.recent[client] = mine
        return None


class RequestIdFilter(logging.Filter):
    """Adds record.request_id (or "-") so a log format can show %(request_id)s."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class _Refusal(Exception):
    """A SearchcoreError that a route answers with a status of its own instead of _status's."""

    def __init__(self, status: int, error: SearchcoreError) -> None:
        super().__init__(str(error))
        self.status, self.error = status, error


async def _searchcore_error(request: Request, exc: SearchcoreError) -> JSONResponse:
    return _error_response(exc, _status(exc))


async def _refusal(request: Request, exc: _Refusal) -> JSONResponse:
    return _error_response(exc.error, exc.status)


def _hit(result: SearchResult, library: str, access: Access) -> Hit:
    """A result as the API gives it: a moment of a video with the URL that streams its file."""
    fields = result.to_json()
    video = fields.pop("video", None)
    if result.video is not None and video is not None:
        video = VideoLink(**video, url=access.video_url(library, result.video.video_id))
    return Hit(url=f"/api/images/{library}/{result.image_id}", video=video, **fields)


def _error_response(exc: SearchcoreError, status: int) -> JSONResponse:
    """The English message as detail, beside the error's kind and fields (for a client's own wording)."""
    return JSONResponse({"detail": str(exc), **exc.to_json()}, status_code=status)


def _status(exc: SearchcoreError) -> int:
    if isinstance(exc, (BackendUnavailableError, LibraryLockedError)):
        return 503
    if isinstance(exc, QueryError) and exc.kind == "reindex_running":
        return 409  # one reindex of a library at a time
    if isinstance(exc, MassRemovalError):
        return 409  # the folder's state conflicts with the library's: the drive may not be mounted
    if isinstance(exc, LibraryError):
        return 404  # names are validated up front, so what is left is a missing (or other-model) library
    return 400


def _library(name: str) -> str:
    try:
        return validate_library(name)
    except LibraryError as exc:
        raise _Refusal(400, exc) from None


def _authenticate(access: Access, credentials: HTTPBasicCredentials | None) -> None:
    if credentials is None or not access.allows(credentials.username, credentials.password):
        raise HTTPException(401, str(AccessError("sign_in_required")),
                            headers={"WWW-Authenticate": 'Basic realm="searchcore"'})


def _client_address(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    host = str((scope.get("client") or ("unknown",))[0])
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    if host in LOCAL_HOSTS and forwarded:
        # Through the share tunnel (its client runs on this machine): the proxy appends the caller's address
        # last; anything before it is whatever the caller claimed.
        return forwarded.rsplit(",", 1)[-1].strip()
    return host


def _share(server: uvicorn.Server, blocks: gr.Blocks, host: str, port: int) -> None:
    from gradio import networking

    while not server.started and not server.should_exit:
        time.sleep(0.1)
    try:
        url = networking.setup_tunnel(_url_host(host), port, blocks.share_token, None, None)
    except Exception as exc:  # noqa: BLE001 - the tunnel fails in ways gradio does not name (no network, blocked frpc)
        log.error("could not open a share link (%s); still serving on http://%s:%d", exc, _url_host(host), port)
        return
    log.warning("public share link: %s", url)


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
