"""The HTTP API of one store: search, entry details, encoding, health, and
(token-gated) ingest and delete.

:func:`create_api` wraps a :class:`~dashboard.service.SwanService` in a FastAPI
app whose routes live under ``/api`` (schema at ``/api/openapi.json``, docs at
``/api/docs``)::

    GET    /api/health                     store size, encoder, writes on/off
    POST   /api/search                     search with an uploaded map (``file``)
    GET    /api/entries/{entry}            metadata (store id or EMDB id)
    GET    /api/entries/{entry}/similar    search with a stored entry
    POST   /api/encode                     the code of an uploaded map, per scale
    POST   /api/superpose                  an uploaded map superposed on a hit (zip)
    GET    /api/entries/{entry}/superpose/{hit}   one entry on another (zip)
    POST   /api/entries                    ingest an upload    (Bearer token)
    DELETE /api/entries/{entry}            delete an entry     (Bearer token)

**Errors** are always JSON ``{"error": "<one line>"}`` with the status that fits:
400 (bad upload, bad ``where``), 403 (writes disabled or wrong token), 404
(unknown entry or route), 409 (another process is writing the store; or a delete
by an EMDB id that several entries hold, with their store ids in ``ids``), 413
(body over the limit), 422 (invalid parameters), 503 (busy: too many searches
or uploads at once, with ``Retry-After``). The line never holds a traceback or a
server path: paths are cut to their base name.

**Uploads** are limited before they are read: :class:`BodySizeLimit` answers 413
to a ``Content-Length`` over the limit without reading the body, and counts the
bytes of a chunked body as they arrive. The service checks the map's content (not
its name or content type) and never uses the client's file name as a path.

**Threads.** Every service call blocks (encoding, DuckDB, FAISS), so endpoints are
plain ``def`` functions, which FastAPI runs in its thread pool; the event loop stays
free. Encoding uploads is CPU- and memory-heavy, so at most ``upload_slots`` run at
once and the others wait (up to ``upload_wait`` seconds, then 503 with
``Retry-After``). How many searches the server holds at once is bounded in
:mod:`dashboard.server` (:class:`~dashboard.server.SearchLimit`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.export import hit_export_rows, rows_csv
from dashboard.generative import MAX_DRAWS, Drawn, PriorUnavailable, prior_service
from dashboard.pairs import Pair, Pairs
from dashboard.service import AmbiguousEntry, SwanService, UploadError
from swan_index.db import StoreBusyError
from swan_index.superpose import safe_name

log = logging.getLogger(__name__)

#: Where the API lives; everything else is left to the dashboard.
API_PREFIX = "/api"
#: Bytes allowed on top of the upload limit: multipart boundaries, part headers
#: and the small form fields (``k``, ``where``...).
MULTIPART_OVERHEAD = 64 * 1024
#: Bytes allowed on top of base64-encoded uploads for the dashboard's JSON
#: callbacks (Dash sends an uploaded file base64-encoded inside JSON).
DASH_OVERHEAD = 2**20
#: Longest accepted ``where`` predicate (characters).
MAX_WHERE = 2000
#: Longest error line sent to a client (characters).
MAX_MESSAGE = 1000
#: ``Retry-After`` (seconds) of an upload that found no free slot in time.
UPLOAD_RETRY_AFTER = 60
#: Largest store id (DuckDB BIGINT).
MAX_ID = 2**63 - 1

# An absolute path (at least two components); replaced by its base name.
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()]+/)+([^\s'\"/:,;()]*)")


# -- response models (the OpenAPI schema) -----------------------------------------
class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="what went wrong and how to fix it (one line)")
    ids: list[int] | None = Field(
        None, description="409 on delete: the store ids an EMDB id names"
    )


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str = Field(description='"ok" when the store answers')
    entries: int = Field(description="entries in the store")
    encoder: str = Field(description="hash of the encoder checkpoint of the codes")
    scales: list[int] = Field(description="scale sides, coarse to fine")
    writes_enabled: bool = Field(description="ingest/delete allowed (with a token)")


class HitBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    rank: int = Field(description="1-based")
    id: int = Field(description="store entry id")
    emdb_id: str | None = Field(None, description='e.g. "EMD-1832"')
    score: float = Field(description="combined score; higher is more similar")
    scores: dict[str, float] = Field(
        description='per scale side ("1", "2", ...) the cosine similarity, plus '
        '"size": ln(rg_query / rg_entry) when both are known, and "fit": the best '
        "correlation over rotations of the query with the entry's preview when "
        "the hit was re-scored"
    )
    pose: int | None = Field(None, description="query pose that scored best")
    shape: float | None = Field(
        None, description="shape score: the weighted mean of the per-scale cosines"
    )
    terms: dict[str, float] = Field(
        default_factory=dict,
        description='the terms the score is the sum of: "shape" (1 - fit_weight) x '
        'shape, "fit" fit_weight x fit (when the fit re-scored the hit), "size" '
        "-size_weight x |ln(rg_query / rg_entry)| (see significance.formula)",
    )
    excess: float | None = Field(
        None,
        description="score minus the median score of the store's reference sample "
        "against this query (its unrelated entries)",
    )
    scale_z: dict[str, float] = Field(
        default_factory=dict,
        description="per scale side, the cosine against this query's cosines to the "
        "reference sample: (cosine - median) / (1.4826 MAD); about 0 is typical of "
        "unrelated maps",
    )
    pvalue: float | None = Field(
        None, description="probability that an unrelated entry has this excess"
    )
    evalue: float | None = Field(
        None,
        description="unrelated entries expected to score at least this high for "
        "this query in a store of this size",
    )
    significant: bool | None = Field(
        None, description="evalue below significance.threshold"
    )
    title: str | None = None
    method: str | None = None
    resolution: float | None = None
    label: str | None = None
    rg: float | None = Field(None, description="radius of gyration, Å")


class UploadInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(description="the upload's file name (for display only)")
    grid: list[int] = Field(description="map size (x, y, z), voxels")
    voxel_size: float = Field(description="Å per voxel")
    contour: float = Field(description="contour level used, map units")
    contour_source: str = Field(description='"user", "header", "map" or "auto"')
    rg: float = Field(description="radius of gyration above the contour, Å")
    poses: int = Field(description="candidate canonical poses searched")
    completion_strength: float | None = Field(
        None,
        description="with complete=true: the prior's share in the completion "
        "searched as well (a hit from it has a pose past the map's own)",
    )


class SignificanceBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    formula: str = Field(description="how the score is made, with its weights")
    threshold: float = Field(description="E-value below which a hit is significant")
    entries: int = Field(description="entries in the store (the N of the E-values)")
    significant: int | None = Field(
        None,
        description="significant hits (the query's own entry left out); null when "
        "the store is too small for a null model",
    )
    message: str = Field(
        description='one line: "N significant matches", "no significant match ..." '
        "or why there is no significance"
    )
    null: dict[str, Any] | None = Field(
        None, description="the null model: its distribution, parameters and sample"
    )


class SearchResult(BaseModel):
    query: UploadInfo
    hits: list[HitBody]
    significance: SignificanceBody | None = None


class EntryQueryBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int = Field(description="store id of the query entry")
    poses: int = Field(description="poses searched (rows of the query code)")
    source: str = Field(
        description='"map": its stored vectors and its map read again in every '
        'candidate pose; "stored": its stored vectors only (file gone or changed)'
    )


class SimilarResult(BaseModel):
    query: EntryQueryBody
    hits: list[HitBody]
    significance: SignificanceBody | None = None


class Entry(BaseModel):
    """One stored map; ``source_path`` and ``header_path`` are base names only."""

    model_config = ConfigDict(extra="allow")

    id: int
    emdb_id: str | None = None
    title: str | None = None
    method: str | None = None
    resolution: float | None = None
    organism: str | None = None
    sample_name: str | None = None
    release_date: str | None = None
    fitted_pdbs: list[str] | None = None
    voxel_size: float | None = None
    box: list[int] | None = None
    rg: float | None = None
    sha256: str | None = None
    source_path: str | None = Field(None, description="file name (no folder)")
    header_path: str | None = Field(None, description="file name (no folder)")


class EntryPage(BaseModel):
    total: int = Field(description="entries matching the filter")
    offset: int
    limit: int
    next_offset: int | None = Field(description="offset of the next page; null: last")
    entries: list[Entry] = Field(description="ordered by store id")


class ScaleCode(BaseModel):
    scale: int = Field(description="scale side s")
    tokens: list[Any] = Field(description="token indices, nested [depth, s, s, s]")
    vector: list[float] = Field(description="L2-normalised retrieval vector")


class EncodeResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    query: UploadInfo
    checkpoint_hash: str
    bits: int = Field(description="size of the token code, bits")
    scales: list[ScaleCode] = Field(description="per scale, coarse to fine")


class StoredEntry(BaseModel):
    id: int
    emdb_id: str | None = None


class IngestResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: int = Field(description="entries stored (0 when the map was already stored)")
    skipped: int = Field(description="1 when the same map was already stored")
    failed: int
    entries: list[StoredEntry] = Field(
        default_factory=list, description="the stored entry holding this map"
    )


class Deleted(BaseModel):
    deleted: int = Field(description="entries deleted")
    id: int


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "bad upload or bad `where`",
        403: "writes disabled, or missing or wrong token",
        404: "no such entry",
        409: "another process is writing to the store, or (delete) the EMDB id "
        "names several entries: the answer's `ids` lists them",
        413: "upload over the size limit",
        422: "invalid parameters",
        503: "busy: too many searches or uploads at once; retry after the "
        "`Retry-After` header's seconds",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


# -- parameters --------------------------------------------------------------------
K = Annotated[int, Query(ge=1, le=1000, description="hits wanted")]
WHERE = Annotated[
    str | None,
    Query(
        max_length=MAX_WHERE,
        description='SQL predicate over entries, e.g. "resolution < 4 AND method = '
        "'singleParticle'\"",
    ),
]
EXACT = Annotated[bool, Query(description="score every entry (slower, exact)")]
FORMAT = Annotated[
    Literal["json", "csv"],
    Query(
        description='"json" (default) or "csv": the hits as a CSV file, one row per '
        "hit (rank, name, score, a column per scale, fit, size, method, "
        "resolution, id, emdb_id, emdb_url)"
    ),
]
LEVEL = Annotated[
    float | None,
    Query(
        allow_inf_nan=False,
        description="contour level written into the ChimeraX file, map units "
        "(default: the map's contour)",
    ),
]
INCLUDE_HIT = Annotated[
    bool,
    Query(
        description="put the hit's map in the zip (false: the command file opens "
        "it by its stored file name, for a user who has it)"
    ),
]
PAIR_FORMAT = Annotated[
    Literal["zip", "json"],
    Query(
        description='"zip" (default): the query resampled into the hit\'s frame '
        '(MRC), the hit\'s map and a ChimeraX command file; "json": the '
        "transform and its correlation only"
    ),
]
FIT = Annotated[
    bool,
    Query(
        description="re-score the best hits by a search over all rotations of the "
        "query against their stored previews (finds maps with missing parts or "
        "moved domains, whose canonical poses differ)"
    ),
]
CONTOUR = Annotated[
    float | None,
    Query(
        allow_inf_nan=False,
        description="contour level of the map, map units (default: from the map or "
        "automatic)",
    ),
]
ENTRY = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description='store id (e.g. 3) or EMDB id (e.g. "EMD-1832")',
    ),
]
UPLOAD = Annotated[
    UploadFile,
    File(description="a density map (.map/.mrc/.ccp4, gzip or bzip2 ok)"),
]
STRENGTH = Annotated[
    float,
    Query(
        ge=0,
        le=1,
        description="the prior's share: 0 is the autoencoder's reconstruction, 1 a "
        "fresh draw (default 0.5)",
    ),
]
SEED = Annotated[int, Query(ge=0, le=2**31 - 1, description="seed of the draws")]
COMPLETE = Annotated[
    bool,
    Query(
        description="also search with the map's completion by the latent prior, "
        "keeping each entry's better hit (for maps with parts missing)"
    ),
]
DRAWS = Annotated[
    int, Query(ge=1, le=MAX_DRAWS, description=f"maps drawn (1 to {MAX_DRAWS})")
]
DRAWN_FORMAT = Annotated[
    Literal["zip", "json"],
    Query(
        description='"zip" (default): the maps as MRC files labelled generated; '
        '"json": what was drawn'
    ),
]
# The scheme of the write endpoints (a stateless description, not configuration).
_BEARER = HTTPBearer(
    auto_error=False, description="the write token the server was started with"
)
TOKEN = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


#: The CSV answer of the hits (``format=csv``), beside the JSON one.
_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "the hits (JSON, or CSV)"}
}


# -- the app -----------------------------------------------------------------------
def create_api(
    service: SwanService, upload_slots: int = 2, upload_wait: float = 300.0
) -> FastAPI:
    """The HTTP API over ``service`` (routes under ``/api``).

    Args:
        service: the store and encoder to serve.
        upload_slots: uploads encoded at once (each uses all cores and holds the
            map in memory); further uploads wait.
        upload_wait: seconds an upload waits for a slot before a 503.

    Returns:
        A FastAPI app; mount a dashboard on it with
        :func:`dashboard.server.create_server`.
    """
    if upload_slots < 1:
        raise ValueError(f"upload_slots={upload_slots}: allow at least 1")
    # the interactive docs with their Swagger UI assets served from the package
    # (fastapi-offline), not from a CDN: they work on a machine with no internet
    app = FastAPIOffline(
        title="Cryo-SWAN search",
        summary="Latent-space search of cryo-EM density maps.",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        static_url=f"{API_PREFIX}/docs-assets",
    )
    api_limit = service.max_upload_bytes + MULTIPART_OVERHEAD
    dash_limit = 4 * math.ceil(service.max_upload_bytes / 3) + DASH_OVERHEAD
    app.add_middleware(
        BodySizeLimit,
        api_limit=api_limit,
        other_limit=dash_limit,
        upload_limit=service.max_upload_bytes,
    )
    _add_error_handlers(app, service)
    slots = threading.BoundedSemaphore(upload_slots)
    pairs = Pairs(service)

    @contextmanager
    def upload_slot() -> Iterator[None]:
        if not slots.acquire(timeout=upload_wait):
            raise _ApiError(
                503,
                "too many uploads in progress; retry in a minute",
                {"Retry-After": str(UPLOAD_RETRY_AFTER)},
            )
        try:
            yield
        finally:
            slots.release()

    def check_token(credentials: TOKEN) -> None:
        token = service.write_token
        if token is None:
            raise _ApiError(
                403,
                "writes are disabled on this server; the operator enables them "
                "by starting it with a write token",
            )
        given = "" if credentials is None else credentials.credentials
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise _ApiError(
                403, "missing or wrong write token; send 'Authorization: Bearer TOKEN'"
            )

    @app.get(
        f"{API_PREFIX}/health",
        response_model=Health,
        tags=["store"],
        summary="Store size, encoder and whether writes are enabled",
    )
    def health() -> dict[str, Any]:
        return service.health()

    @app.post(
        f"{API_PREFIX}/search",
        response_model=SearchResult,
        responses={**_CSV, **_errors(400, 413, 422, 503)},
        tags=["search"],
        summary="Search with an uploaded map",
    )
    def search(
        file: UPLOAD,
        form: Annotated[dict[str, Any], Depends(_search_form)],
        k: K = 10,
        where: WHERE = None,
        exact: EXACT = False,
        contour: CONTOUR = None,
        fit: FIT = True,
        format: FORMAT = "json",
        complete: COMPLETE = False,
    ) -> Any:
        """Entries most similar to the uploaded map, best first, with the score at
        every scale. ``k``, ``where``, ``exact``, ``fit`` and ``contour`` may be sent as
        query parameters or as form fields (a form field wins); ``format=csv``
        answers the hits as a CSV file. ``complete=true`` also searches with the
        map's completion by the latent prior and keeps each entry's better hit
        (``swan search --complete``; seconds more)."""
        with upload_slot():
            data = file.file.read()
            options = {
                "name": file.filename or "upload",
                "k": _pick(form["k"], k),
                "where": _pick(form["where"], where),
                "exact": _pick(form["exact"], exact),
                "contour": _pick(form["contour"], contour),
                "fit": _pick(form["fit"], fit),
            }
            if complete:
                result = prior_service(service).search_upload_query(data, **options)[1]
            else:
                result = service.search_upload(data, **options)
        return _hits_as(result, format, file.filename or "upload")

    @app.get(
        f"{API_PREFIX}/entries",
        response_model=EntryPage,
        responses=_errors(400, 422),
        tags=["entries"],
        summary="List the entries, a page at a time",
    )
    def entries(
        offset: Annotated[int, Query(ge=0, description="entries to pass over")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
        where: WHERE = None,
    ) -> dict[str, Any]:
        page = service.list_entries(offset=offset, limit=limit, where=where)
        return {**page, "entries": [_public_entry(r) for r in page["entries"]]}

    @app.get(
        f"{API_PREFIX}/entries/{{entry}}",
        response_model=Entry,
        responses=_errors(404, 422),
        tags=["entries"],
        summary="Metadata of one entry",
    )
    def entry(entry: ENTRY) -> dict[str, Any]:
        return _public_entry(service.entry(_entry_key(entry)))

    @app.get(
        f"{API_PREFIX}/entries/{{entry}}/similar",
        response_model=SimilarResult,
        responses={**_CSV, **_errors(400, 404, 422, 503)},
        tags=["search"],
        summary="Entries most similar to a stored one",
    )
    def similar(
        entry: ENTRY,
        k: K = 10,
        where: WHERE = None,
        exact: EXACT = False,
        fit: FIT = True,
        format: FORMAT = "json",
    ) -> Any:
        """The entry itself comes first (score 1) unless ``where`` excludes it;
        ``format=csv`` answers the hits as a CSV file."""
        result = service.similar(
            _entry_key(entry), k=k, where=where, exact=exact, fit=fit
        )
        return _hits_as(result, format, f"similar-to-{entry}")

    @app.post(
        f"{API_PREFIX}/superpose",
        responses={**_ZIP, **_errors(400, 404, 413, 422, 503)},
        tags=["search"],
        summary="An uploaded map superposed on a stored entry (zip for ChimeraX)",
    )
    def superpose(
        file: UPLOAD,
        hit: Annotated[str, Query(min_length=1, max_length=64, description=_HIT)],
        contour: CONTOUR = None,
        query_level: LEVEL = None,
        hit_level: LEVEL = None,
        include_hit: INCLUDE_HIT = True,
        format: PAIR_FORMAT = "zip",
    ) -> Any:
        """Finds the rigid pose that lays the uploaded map on the entry's map (a
        rotation search at one physical scale) and answers a zip: the upload
        resampled onto the entry's grid (MRC, same voxel size and origin, so it
        overlays the entry's map file as it is), the entry's map, and a ChimeraX
        command file (``.cxc``) opening both at their levels in two colours.
        The entry's map must be on the server (simulated entries have none: 404)."""
        with upload_slot():
            data = file.file.read()
            pair = pairs.for_upload(
                data, file.filename or "upload", _entry_key(hit), contour
            )
            return _pair_as(pair, format, query_level, hit_level, include_hit)

    @app.get(
        f"{API_PREFIX}/entries/{{entry}}/superpose/{{hit}}",
        responses={**_ZIP, **_errors(404, 422, 503)},
        tags=["search"],
        summary="One stored entry superposed on another (zip for ChimeraX)",
    )
    def superpose_entries(
        entry: ENTRY,
        hit: Annotated[str, Path(min_length=1, max_length=64, description=_HIT)],
        query_level: LEVEL = None,
        hit_level: LEVEL = None,
        include_hit: INCLUDE_HIT = True,
        format: PAIR_FORMAT = "zip",
    ) -> Any:
        """As ``POST /api/superpose``, with a stored entry as the query (e.g. a
        hit of ``/similar``); both maps must be on the server."""
        with upload_slot():
            pair = pairs.for_entries(_entry_key(entry), _entry_key(hit))
            return _pair_as(pair, format, query_level, hit_level, include_hit)

    @app.post(
        f"{API_PREFIX}/encode",
        response_model=EncodeResult,
        responses=_errors(400, 413, 422, 503),
        tags=["encode"],
        summary="Encode an uploaded map into its multi-scale code",
    )
    def encode(
        file: UPLOAD,
        contour: CONTOUR = None,
        contour_form: Annotated[
            float | None, Form(alias="contour", allow_inf_nan=False)
        ] = None,
    ) -> dict[str, Any]:
        """Per scale (coarse to fine) the token indices and the retrieval vector of
        the map in its primary canonical pose."""
        with upload_slot():
            data = file.file.read()
            return service.encode_upload(
                data,
                name=file.filename or "upload",
                contour=_pick(contour_form, contour),
            )

    @app.post(
        f"{API_PREFIX}/denoise",
        responses={**_MRC, **_errors(400, 413, 422, 503)},
        tags=["generate"],
        summary="Denoise an uploaded map with the latent prior (MRC, generated)",
    )
    def denoise(
        file: UPLOAD,
        strength: STRENGTH = 0.5,
        contour: CONTOUR = None,
        seed: SEED = 0,
    ) -> Response:
        """The map's latent is carried back towards the prior's data
        (``strength``: 0 is the plain autoencoder's reconstruction, 1 a fresh
        draw), decoded, and resampled onto the upload's own grid, voxel size and
        origin. The MRC file's first header label says it was GENERATED by the
        prior, not measured (``swan ingest`` refuses it unless asked)."""
        with upload_slot():
            data = file.file.read()
            made = (
                prior_service(service)
                .denoise_upload(
                    data, file.filename or "upload", strength, contour, seed
                )
                .file
            )
        return Response(
            made.data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{made.name}"'},
        )

    @app.get(
        f"{API_PREFIX}/entries/{{entry}}/variations",
        responses={**_DRAWN, **_errors(400, 404, 422, 503)},
        tags=["generate"],
        summary="Variations of a stored entry drawn by the latent prior (zip)",
    )
    def variations(
        entry: ENTRY,
        n: DRAWS = 4,
        keep_scales: Annotated[
            int, Query(ge=1, le=8, description="coarsest scales of the entry kept")
        ] = 3,
        seed: SEED = 0,
        format: DRAWN_FORMAT = "zip",
    ) -> Any:
        """``n`` maps that keep the first ``keep_scales`` scales of the entry's
        stored code exactly and draw the finer ones from the prior, in the
        canonical frame (a cube at 1 Å per voxel: the frame has no physical
        scale). A zip of labelled MRC files, or with ``format=json`` what was
        drawn and each map's volume above 0.5 in voxels."""
        drawn = prior_service(service).variations(
            _entry_key(entry), n, keep_scales, seed
        )
        return _drawn_as(drawn, format, f"variations-{safe_name(str(entry))}")

    @app.get(
        f"{API_PREFIX}/generate",
        responses={**_DRAWN, **_errors(400, 422, 503)},
        tags=["generate"],
        summary="Maps drawn from the latent prior alone (zip)",
    )
    def generate(n: DRAWS = 4, seed: SEED = 0, format: DRAWN_FORMAT = "zip") -> Any:
        """``n`` maps drawn from the prior with nothing kept, in the canonical
        frame, as ``/variations``."""
        drawn = prior_service(service).draws(n, seed)
        return _drawn_as(drawn, format, "generated")

    @app.post(
        f"{API_PREFIX}/entries",
        response_model=IngestResult,
        responses=_errors(400, 403, 409, 413, 422, 503),
        tags=["entries"],
        summary="Store an uploaded map (needs the write token)",
        dependencies=[Depends(check_token)],
    )
    def ingest(file: UPLOAD) -> dict[str, Any]:
        """Encodes the map and stores it; a map already stored is skipped. The
        answer names the entry holding it."""
        with upload_slot():
            data = file.file.read()
            summary = service.ingest_upload(data, name=file.filename or "upload")
        for failure in summary.get("failures", []):  # server paths: base names
            failure["path"] = os.path.basename(str(failure.get("path", "")))
        entry_id = summary.pop("id", None)
        summary["entries"] = (
            []
            if entry_id is None
            else [{"id": entry_id, "emdb_id": service.entry(entry_id)["emdb_id"]}]
        )
        return summary

    @app.delete(
        f"{API_PREFIX}/entries/{{entry}}",
        response_model=Deleted,
        responses=_errors(403, 404, 409, 422),
        tags=["entries"],
        summary="Delete an entry (needs the write token)",
        dependencies=[Depends(check_token)],
    )
    def delete(entry: ENTRY) -> dict[str, Any]:
        """An EMDB id held by several entries is refused (409, with their store
        ids in ``ids``): delete one of them by its store id."""
        return service.delete(_entry_key(entry))

    return app


_HIT = 'the hit: store id (e.g. 3) or EMDB id (e.g. "EMD-1832")'
_ZIP: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/zip": {}, "application/json": {}},
        "description": "the zip (or, with format=json, the transform)",
    }
}


def _hits_as(result: dict[str, Any], format: str, name: str) -> Any:
    """A search result as asked: the dict (JSON), or its hits as a CSV file."""
    if format != "csv":
        return result
    text = rows_csv(hit_export_rows(result["hits"]))
    stem = safe_name(name, "hits").split(".")[0] or "hits"
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{stem}-hits.csv"'},
    )


_MRC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/octet-stream": {}},
        "description": "an MRC file labelled generated",
    }
}
_DRAWN: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/zip": {}, "application/json": {}},
        "description": "a zip of MRC files labelled generated (or, with "
        "format=json, what was drawn)",
    }
}


def _drawn_as(drawn: Drawn, format: str, stem: str) -> Any:
    """Drawn maps as asked: a zip of their files, or a JSON description."""
    if format == "json":
        return {
            "description": drawn.description,
            "generated": True,
            "maps": [
                {"file": f.name, "voxels_above_half": int((v > 0.5).sum())}
                for f, v in zip(drawn.files, drawn.volumes, strict=True)
            ],
        }
    name, blob = drawn.archive(stem)
    return Response(
        blob,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _pair_as(
    pair: Pair,
    format: str,
    query_level: float | None,
    hit_level: float | None,
    include_hit: bool = True,
) -> Any:
    """A superposition as asked: its description (JSON) or the zip."""
    if format == "json":
        return pair.describe()
    name, blob = pair.archive(query_level, hit_level, include_hit)
    return Response(
        blob,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _search_form(
    k_form: Annotated[int | None, Form(alias="k", ge=1, le=1000)] = None,
    where_form: Annotated[str | None, Form(alias="where", max_length=MAX_WHERE)] = None,
    exact_form: Annotated[bool | None, Form(alias="exact")] = None,
    fit_form: Annotated[bool | None, Form(alias="fit")] = None,
    contour_form: Annotated[
        float | None, Form(alias="contour", allow_inf_nan=False)
    ] = None,
) -> dict[str, Any]:
    """The search options sent as form fields (``None``: not sent)."""
    return {
        "k": k_form,
        "where": where_form,
        "exact": exact_form,
        "fit": fit_form,
        "contour": contour_form,
    }


def _pick(form: Any, query: Any) -> Any:
    return query if form is None else form


def _entry_key(text: str) -> int | str:
    """A store id (int) or an EMDB id (str) from a path parameter.

    Raises:
        KeyError: digits that cannot be a store id.
    """
    text = text.strip()
    if text.isascii() and text.isdigit():
        if int(text) > MAX_ID:
            raise KeyError(f"no entry {text}")
        return int(text)
    if text.isdigit() or not text:  # e.g. non-ASCII digits
        raise KeyError(f"no entry {text!r}")
    return text


def _public_entry(row: dict[str, Any]) -> dict[str, Any]:
    """An entry row without server folders: paths become base names."""
    out = dict(row)
    for key in ("source_path", "header_path"):
        if out.get(key):
            out[key] = os.path.basename(str(out[key]))
    return out


# -- errors ------------------------------------------------------------------------
class _ApiError(Exception):
    """An answer with this status, message and headers (raised inside endpoints)."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def _one_line(text: str, service: SwanService) -> str:
    """A message fit for a client: one line, no server paths, bounded length."""
    for folder in {str(service.store_path), str(service.store_path.resolve())}:
        text = text.replace(folder, "the store")
    text = _ABS_PATH.sub(lambda m: m.group(1) or "(path)", text)
    text = " ".join(text.split())
    if text.startswith("--where "):  # the store speaks to the command line
        text = "where " + text[len("--where ") :]
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return text or "error"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        where, name = (
            (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("", "".join(loc))
        )
        label = f"{name} ({where})" if where else name or "request"
        parts.append(f"{label}: {err.get('msg', 'invalid')}")
    text = "; ".join(parts) or "invalid request"
    if "file (body)" in text:
        text += "; send the map as the multipart form field 'file'"
    return text


def _add_error_handlers(app: FastAPI, service: SwanService) -> None:
    """Every error becomes ``{"error": "<one line>"}`` with its status."""

    def answer(
        status: int, message: str, headers: dict | None = None, scrub: bool = True
    ) -> JSONResponse:
        text = _one_line(message, service) if scrub else message
        return JSONResponse({"error": text}, status_code=status, headers=headers)

    def text(exc: BaseException) -> str:
        return str(exc.args[0]) if exc.args else type(exc).__name__

    handlers: dict[type[BaseException], Callable[[Request, Any], JSONResponse]] = {}

    def handles(kind: type[BaseException]):  # noqa: ANN202
        def register(fn: Callable[[Request, Any], JSONResponse]) -> Callable:
            handlers[kind] = fn
            return fn

        return register

    @handles(_ApiError)
    def api_error(request: Request, exc: _ApiError) -> JSONResponse:
        return answer(exc.status, text(exc), exc.headers)

    @handles(UploadError)
    def upload_error(request: Request, exc: UploadError) -> JSONResponse:
        log.info("%s %s: %s", request.method, request.url.path, exc)
        return answer(exc.status, text(exc))

    @handles(AmbiguousEntry)
    def ambiguous(request: Request, exc: AmbiguousEntry) -> JSONResponse:
        return JSONResponse(
            {"error": _one_line(text(exc), service), "ids": exc.ids}, status_code=409
        )

    @handles(PriorUnavailable)
    def no_prior(request: Request, exc: PriorUnavailable) -> JSONResponse:
        return answer(503, text(exc))

    @handles(ValueError)
    def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return answer(400, text(exc))

    @handles(KeyError)
    def not_found(request: Request, exc: KeyError) -> JSONResponse:
        return answer(
            404,
            f"{text(exc)}; give a store id (e.g. 3) or an EMDB id (e.g. EMD-1832)",
        )

    @handles(PermissionError)
    def forbidden(request: Request, exc: PermissionError) -> JSONResponse:
        return answer(403, text(exc))

    @handles(StoreBusyError)
    def busy(request: Request, exc: StoreBusyError) -> JSONResponse:
        return answer(409, text(exc))

    @handles(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(422, _validation_message(exc))

    @handles(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            message = f"no route {path}; see {API_PREFIX}/docs"
        elif exc.status_code == 405:
            message = f"{method} is not allowed on {path}; see {API_PREFIX}/docs"
        elif exc.status_code == 400:
            message = (
                f"{str(exc.detail).rstrip('.')}; send a multipart/form-data body "
                "with the map as "
                "form field 'file'"
            )
        else:
            message = str(exc.detail)
        headers = getattr(exc, "headers", None)
        return answer(exc.status_code, message, headers, scrub=exc.status_code == 400)

    @handles(Exception)
    def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return answer(500, "internal error; the server log has the details")

    for kind, fn in handlers.items():
        app.add_exception_handler(kind, fn)


# -- body size limit ---------------------------------------------------------------
class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over a limit with a JSON 413.

    A ``Content-Length`` over the limit is refused before any of the body is read;
    a chunked body is counted as it arrives and refused as soon as it passes the
    limit (whatever the app answered to the cut body is replaced by the 413).

    Starlette (1.x) and FastAPI (0.16x) now ship a similar limit, but it answers
    in plain text and is newer than the versions this package supports; this one
    answers JSON and gives the dashboard (base64 uploads in JSON) its own limit.

    Args:
        app: the ASGI app.
        api_limit: bytes allowed for requests under ``/api``.
        other_limit: bytes allowed for other paths (the dashboard).
        upload_limit: the map size limit, named in the message.
    """

    def __init__(
        self, app: ASGIApp, api_limit: int, other_limit: int, upload_limit: int
    ) -> None:
        self.app = app
        self.api_limit = api_limit
        self.other_limit = other_limit
        self.upload_limit = upload_limit

    def _limit(self, path: str) -> int:
        under_api = path == API_PREFIX or path.startswith(API_PREFIX + "/")
        return self.api_limit if under_api else self.other_limit

    async def _refuse(self, send: Send, size: int | None, limit: int) -> None:
        what = "request body" if size is None else f"request body of {size:,} bytes"
        message = (
            f"{what} is over the {limit:,}-byte limit (maps up to "
            f"{self.upload_limit:,} bytes); send a smaller or gzipped map"
        )
        body = JSONResponse({"error": message}, status_code=413).body
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        length = _content_length(scope)
        if length is not None and length > limit:
            log.info("refused %s-byte body for %s", length, scope.get("path"))
            await self._refuse(send, length, limit)
            return
        received = 0
        too_large = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:  # the app's answer to a cut body: replaced by the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            log.info("refused a body over %s bytes for %s", limit, scope.get("path"))
            await self._refuse(send, None, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
