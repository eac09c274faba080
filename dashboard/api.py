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
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Path, Query, UploadFile
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline

from dashboard.api_guards import ApiError, BodySizeLimit, add_error_handlers
from dashboard.api_models import (
    API_PREFIX,
    COMPLETE,
    CONTOUR,
    CSV_RESPONSE,
    DASH_OVERHEAD,
    DRAWN_FORMAT,
    DRAWS,
    ENTRY,
    EXACT,
    FIT,
    FORMAT,
    INCLUDE_HIT,
    LEVEL,
    MAX_ID,
    MAX_WHERE,
    MULTIPART_OVERHEAD,
    PAIR_FORMAT,
    SEED,
    STRENGTH,
    TOKEN,
    UPLOAD,
    UPLOAD_RETRY_AFTER,
    WHERE,
    Deleted,
    EncodeResult,
    Entry,
    EntryPage,
    Health,
    IngestResult,
    K,
    SearchResult,
    SimilarResult,
    error_responses,
)
from dashboard.export import hit_export_rows, rows_csv
from dashboard.generative import (
    COMPLETE_STRENGTH,
    Denoised,
    Drawn,
    prior_service,
)
from dashboard.pairs import Pair, Pairs
from dashboard.service import SwanService
from swan_index.generate import VARIATION_KEEP, VARIATION_STRENGTH
from swan_index.superpose import safe_name

log = logging.getLogger(__name__)


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
    add_error_handlers(app, service)
    slots = threading.BoundedSemaphore(upload_slots)
    pairs = Pairs(service)

    @contextmanager
    def upload_slot() -> Iterator[None]:
        if not slots.acquire(timeout=upload_wait):
            raise ApiError(
                503,
                "too many uploads in progress; retry in a minute",
                {"Retry-After": str(UPLOAD_RETRY_AFTER)},
            )
        try:
            yield
        finally:
            slots.release()

    def restored(
        made_by: Callable[..., Denoised],
        file: UploadFile,
        strength: float,
        contour: float | None,
        seed: int,
    ) -> Response:
        """An upload denoised or completed (``made_by``: the prior service's
        ``denoise_upload`` or ``complete_upload``) as an MRC attachment."""
        with upload_slot():
            data = file.file.read()
            made = made_by(data, file.filename or "upload", strength, contour, seed)
        return Response(
            made.file.data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{made.file.name}"'},
        )

    def check_token(credentials: TOKEN) -> None:
        token = service.write_token
        if token is None:
            raise ApiError(
                403,
                "writes are disabled on this server; the operator enables them "
                "by starting it with a write token",
            )
        given = "" if credentials is None else credentials.credentials
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise ApiError(
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
        responses={**CSV_RESPONSE, **error_responses(400, 413, 422, 503)},
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
        map's completions by the completion prior and keeps each entry's better
        hit (``swan search --complete``; seconds more)."""
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
        responses=error_responses(400, 422),
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
        responses=error_responses(404, 422),
        tags=["entries"],
        summary="Metadata of one entry",
    )
    def entry(entry: ENTRY) -> dict[str, Any]:
        return _public_entry(service.entry(_entry_key(entry)))

    @app.get(
        f"{API_PREFIX}/entries/{{entry}}/similar",
        response_model=SimilarResult,
        responses={**CSV_RESPONSE, **error_responses(400, 404, 422, 503)},
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
        responses={**_ZIP, **error_responses(400, 404, 413, 422, 503)},
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
        responses={**_ZIP, **error_responses(404, 422, 503)},
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
        responses=error_responses(400, 413, 422, 503),
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
        responses={**_MRC, **error_responses(400, 413, 422, 503)},
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
        made_by = prior_service(service).denoise_upload
        return restored(made_by, file, strength, contour, seed)

    @app.post(
        f"{API_PREFIX}/complete",
        responses={**_MRC, **error_responses(400, 413, 422, 503)},
        tags=["generate"],
        summary="Complete a partial uploaded map with the latent prior (MRC, "
        "generated)",
    )
    def complete(
        file: UPLOAD,
        strength: Annotated[
            float,
            Query(
                ge=0,
                le=1,
                description="the prior's share: 0 is the autoencoder's "
                f"reconstruction, 1 a fresh draw (default {COMPLETE_STRENGTH:g})",
            ),
        ] = COMPLETE_STRENGTH,
        contour: CONTOUR = None,
        seed: SEED = 0,
    ) -> Response:
        """``swan complete`` for an upload (a map with parts missing): a whole
        molecule drawn by the completion prior given the upload, the upload's
        own density kept where it reaches its contour (nothing says which
        molecule a missing part belonged to). The completed map comes
        back on the upload's own grid, voxel size and origin, as an MRC file
        whose first header label says it was GENERATED by the prior, not
        measured."""
        made_by = prior_service(service).complete_upload
        return restored(made_by, file, strength, contour, seed)

    @app.get(
        f"{API_PREFIX}/entries/{{entry}}/variations",
        responses={**_DRAWN, **error_responses(400, 404, 422, 503)},
        tags=["generate"],
        summary="Variations of a stored entry drawn by the latent prior (zip)",
    )
    def variations(
        entry: ENTRY,
        n: DRAWS = 4,
        keep_scales: Annotated[
            int | None,
            Query(
                ge=1,
                le=8,
                description=f"coarsest scales of the entry kept (default "
                f"{VARIATION_KEEP}, or all but the finest of an encoder with fewer)",
            ),
        ] = None,
        seed: SEED = 0,
        strength: Annotated[
            float,
            Query(
                gt=0,
                le=1,
                description="the prior's share: 1 draws the finer scales afresh, "
                "less starts from the entry's own and stays closer to it",
            ),
        ] = VARIATION_STRENGTH,
        format: DRAWN_FORMAT = "zip",
    ) -> Any:
        """``n`` maps that keep the first ``keep_scales`` scales of the entry's
        stored code exactly and draw the finer ones from the prior, in the
        canonical frame (a cube at 1 Å per voxel: the frame has no physical
        scale). A zip of labelled MRC files, or with ``format=json`` what was
        drawn and each map's volume above 0.5 in voxels."""
        drawn = prior_service(service).variations(
            _entry_key(entry), n, keep_scales, seed, strength
        )
        return _drawn_as(drawn, format, f"variations-{safe_name(str(entry))}")

    @app.get(
        f"{API_PREFIX}/generate",
        responses={**_DRAWN, **error_responses(400, 422, 503)},
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
        responses=error_responses(400, 403, 409, 413, 422, 503),
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
        responses=error_responses(403, 404, 409, 422),
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
