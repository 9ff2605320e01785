"""The seed's own routes (the Chinese-CLIP blog post and the Milvus bootcamp's image-search server), route for
route: POST /img/load, /img/search, /img/count, /img/drop, /img/upload, GET /data and GET /progress.

A thin layer over the Engine with the seed's names, parameters and shapes; errors come back as
{"status": false, "msg": ...} with status 400 (401 or 403 when access is refused). Three things differ on
purpose: /img/search answers best first, with the cosine similarity as `distance`; GET /data serves only the
images of a library, never a file of the server; /img/upload fetches a URL only from the hosts the operator
lists in SEARCHCORE_UPLOAD_URL_HOSTS.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, FastAPI, Form, Request, UploadFile
from fastapi import File as FileField
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from searchcore.config import validate_library
from searchcore.engine import Engine, SplitIngest
from searchcore.errors import SearchcoreError, SeedError
from searchcore.ids import DIGITS
from searchcore.sources.imaging import mime_type
from searchcore.web.metrics import Metrics

TAG = "seed-compatible"
SEED_PATHS = re.compile(r"^/(img/(load|search|count|drop|upload)|data|progress)/?$")
SEARCH_URL = re.compile(rf"^(?:https?://[^/?#]+)?/api/images/([^/?#]+)/({DIGITS.pattern})$")
DEFAULT_TOP_K = 10  # the bootcamp's TOP_K
FETCH_SECONDS = 10

Check = Callable[[HTTPBasicCredentials | None], None]


class LoadRequest(BaseModel):
    """The post's load body: a collection name and a dataset folder on the server."""

    Table: str | None = Field(None, description="library name (null: the server's --library)")
    File: str = Field(description="a Chinese-CLIP dataset folder on the server (or a folder of images)")


class SeedHit(BaseModel):
    """One result: best first, distance is the cosine similarity (higher is closer)."""

    distance: float
    image_id: int
    url: str


class LoadProgress:
    """Images done of the split being loaded, for GET /progress."""

    def __init__(self) -> None:
        self.current, self.total = 0, 0

    def __call__(self, done: int, total: int | None) -> None:
        self.current, self.total = done, total if total is not None else done


def install(api: FastAPI, engine: Engine, metrics: Metrics, *, reader: Check, writer: Check) -> None:
    """Add the seed's routes to the app (tag "seed-compatible"), guarded by the app's own read and write checks."""
    api.include_router(seed_router(engine, metrics, reader=reader, writer=writer))

    @api.exception_handler(SeedError)
    async def seed_error(request: Request, exc: SeedError) -> JSONResponse:
        return JSONResponse({"status": False, "msg": exc.msg}, status_code=exc.status, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if not SEED_PATHS.match(request.url.path):
            return await request_validation_exception_handler(request, exc)
        return JSONResponse({"status": False, "msg": _validation_message(exc)}, status_code=400)


def seed_router(engine: Engine, metrics: Metrics, *, reader: Check, writer: Check) -> APIRouter:
    """The seed's routes over one engine."""
    router = APIRouter(tags=[TAG])
    read, write = Depends(_guard(reader)), Depends(_guard(writer))
    progress = LoadProgress()

    def library(name: str | None) -> str:
        try:
            return validate_library(name or engine.settings.library)
        except SearchcoreError as exc:
            raise SeedError(str(exc)) from None

    @router.post("/img/load", dependencies=[write])
    def load(body: LoadRequest) -> str:
        """Ingest every split of a Chinese-CLIP folder: from {split}_imgs.img_feat.jsonl when present (not
        re-encoded), else by encoding {split}_imgs.tsv; the answer says which."""
        name = library(body.Table)
        with _seed_errors(), metrics.backend("ingest"):
            loads = engine.ingest_dataset(body.File, library=name, progress=progress)
        for done in loads:
            metrics.ingested(done.report)
        return f"Successfully loaded data into {name}: " + "; ".join(_describe(done) for done in loads)

    @router.post("/img/search", dependencies=[read], response_model=list[SeedHit])
    def search(content: str, table_name: str | None = None, topk: int = Form(DEFAULT_TOP_K)) -> list[SeedHit]:
        """Top-k images for a Chinese description, best first; distance is the cosine similarity."""
        name = library(table_name)
        with _seed_errors(), metrics.search("text"):
            results = engine.search_text(content, topk, name, mode="semantic")
        return [SeedHit(distance=r.score, image_id=r.image_id, url=f"/api/images/{name}/{r.image_id}")
                for r in results]

    @router.post("/img/count", dependencies=[read])
    def count(table_name: str | None = None) -> int:
        """The number of images in a library (0 when it does not exist)."""
        name = library(table_name)
        with _seed_errors(), metrics.backend("count"):
            return engine.info(name).count

    @router.post("/img/drop", dependencies=[write])
    def drop(table_name: str | None = None) -> str:
        """Delete a library's vectors and images."""
        name = library(table_name)
        with _seed_errors(), metrics.backend("drop"):
            engine.drop(name)
        return f"Successfully dropped {name}"

    @router.post("/img/upload", dependencies=[write])
    def upload(image: UploadFile | None = FileField(None), url: str | None = None,
               table_name: str | None = None) -> str:
        """Add one image: an uploaded file, or a URL on a host SEARCHCORE_UPLOAD_URL_HOSTS allows."""
        name = library(table_name)
        limit = engine.max_image_bytes
        if image is not None:
            # a plain def (run in the thread pool): encoding the image must not hold up the event loop
            data, filename = image.file.read(limit + 1), image.filename or ""
        elif url:
            data, filename = _fetch(url, engine.settings.upload_url_hosts, limit), urlsplit(url).path
        else:
            raise SeedError("send an image file (form field image) or a url")
        if len(data) > limit:
            raise SeedError(f"the image is larger than {limit // 2**20} MB")
        with _seed_errors(), metrics.backend("ingest"):
            image_id = engine.add_image(data, filename, name)
        return f"Successfully loaded data: {image_id}"

    @router.get("/data", dependencies=[read], response_class=Response,
                responses={200: {"content": {"image/*": {}}}})
    def data(image_path: str, table_name: str | None = None) -> Response:
        """An image of a library, by the url an /img/search answer gave, or by its id (and table_name)."""
        found = SEARCH_URL.match(image_path)
        if found:
            name, image_id = library(found.group(1)), int(found.group(2))
        elif DIGITS.fullmatch(image_path):
            name, image_id = library(table_name), int(image_path)
        else:
            raise SeedError("image_path must be a url an /img/search answer gave (/api/images/LIBRARY/ID) or an "
                            "image id; no other file is served")
        with _seed_errors(), metrics.backend("get image"):
            stored = engine.get_image(image_id, name)
        return Response(stored.data, media_type=mime_type("JPEG" if stored.thumbnail else stored.format),
                        headers={"X-Content-Type-Options": "nosniff"})

    @router.get("/progress", dependencies=[read])
    def load_progress() -> str:
        """Images done of the split /img/load is ingesting (or last ingested)."""
        return f"current: {progress.current}, total: {progress.total}"

    return router


def _guard(check: Check) -> Callable[..., None]:
    """The app's read or write check, its refusal in the seed's error shape."""

    def guarded(credentials: HTTPBasicCredentials | None = Depends(HTTPBasic(auto_error=False))) -> None:
        try:
            check(credentials)
        except HTTPException as exc:
            raise SeedError(str(exc.detail), exc.status_code, dict(exc.headers or {})) from None

    return guarded


@contextlib.contextmanager
def _seed_errors() -> Iterator[None]:
    """Turns a SearchcoreError into a SeedError (status 400)."""
    try:
        yield
    except SearchcoreError as exc:
        raise SeedError(str(exc)) from None


def _describe(done: SplitIngest) -> str:
    report = done.report
    counts = f"{report.added} added, {report.present} already present, {len(report.bad)} bad"
    if done.split is None:
        return f"folder of images: {counts} (encoded)"
    how = f"vectors from {done.split}_imgs.img_feat.jsonl, not re-encoded" if done.features else "encoded"
    return f"{done.split}: {counts} ({how})"


def _fetch(url: str, allowed: str, limit: int) -> bytes:
    """The bytes at an http(s) URL on an allowed host, without following redirects (which could leave it)."""
    parts = urlsplit(url)
    hosts = {h.strip().lower() for h in allowed.split(",") if h.strip()}
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SeedError(f"url must be an http or https URL, got {url[:200]!r}")
    if "*" not in hosts and parts.hostname.lower() not in hosts:
        raise SeedError(f"this app fetches no image from {parts.hostname}: the operator lists the hosts it may "
                        "fetch from in SEARCHCORE_UPLOAD_URL_HOSTS (now "
                        f"{'empty' if not hosts else ', '.join(sorted(hosts))}); upload the file instead")
    try:
        with httpx.stream("GET", url, timeout=FETCH_SECONDS, follow_redirects=False) as answer:
            if answer.status_code != 200:
                raise SeedError(f"fetching {url[:200]} answered HTTP {answer.status_code}")
            data = b""
            for chunk in answer.iter_bytes():
                data += chunk
                if len(data) > limit:
                    break
            return data
    except httpx.HTTPError as exc:
        raise SeedError(f"could not fetch {url[:200]}: {exc}") from None


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"
