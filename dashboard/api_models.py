"""The HTTP API's limits, response models (its OpenAPI schema) and request
parameters, shared by :mod:`dashboard.api` and :mod:`dashboard.api_guards`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import Depends, File, Path, Query, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from dashboard.generative import MAX_DRAWS

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
ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s'\"/:,;()]+/)+([^\s'\"/:,;()]*)")


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


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
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
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "the hits (JSON, or CSV)"}
}
