"""Calibrated significance of search hits: E-values from a null model of the store.

A score alone says little: a compact, globular query scores high against almost
everything (its coarse cosines are near 1 whatever the entry), so its best
unrelated entry can outscore the genuine relative of another query. As BLAST and
Foldseek do, each hit gets an *E-value*: the number of unrelated entries expected
to score at least as high, for this query, in a store of this size.

The null model has two parts:

* **The query's background.** A fixed random *reference sample* of the store
  (:data:`REFERENCE` entries, drawn once per store content) is scored against
  the query as a search scores its hits
  (:func:`swan_index.ranking.score_candidates` and the rotational fit). Almost
  all of them are unrelated to the query, so their median score (robust to the
  few relatives) says where this query's unrelated entries lie. A hit's
  *excess* is its score minus that median. Per scale, the cosine is put against
  the background's median and median absolute deviation (``scale_z``).
* **The distribution of the excess of unrelated pairs** (:class:`NullModel`, one
  per store content and way of searching). :data:`CALIBRATION` entries of the
  store are searched against the reference sample in the same way, and a
  distribution of :data:`SHAPE` is fitted to the excess of those pairs by least
  squares on their quantiles :data:`FIT_QUANTILES`, leaving out the pairs so far
  in its tail that they are taken as related (:func:`fit_tail`). Its survival
  function is a hit's p-value; ``E = entries x p``.

Both are sampled, so the cost does not grow with the store: the calibration
(30-85 s on two busy cores with the rotational fit, about 3 s without) runs once
per store content, and every search scores its query against the reference
sample (about 0.1 s). The model is kept in memory and in the user's cache folder
(:data:`CACHE`), keyed by the store's content (its encoder and the ids it holds:
ids are never reused, so any add or delete gives a new key) and the search
options, and checked against the content hashes of its reference sample's maps
(another store with the same ids is told apart); a store that changes is
calibrated again on its next search.

A store of fewer than :data:`MIN_ENTRIES` entries gets no significance (its
background would be a handful of scores). The shape and the threshold
:data:`EVALUE_THRESHOLD` were chosen on one simulated draw of the retrieval
benchmark and checked on another (``python -m benchmarks.bench_significance``;
docs/search.md); the quantiles, for robustness to the related pairs of the
sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from encoder.code import MultiScaleCode
from swan_index.files import atomic_write_text
from swan_index.fit import FitQuery, comparable, fit_query
from swan_index.ranking import (
    Hit,
    SearchOptions,
    formula,
    score_candidates,
    score_terms,
    shape_score,
    size_gap,
)

log = logging.getLogger(__name__)

#: Entries of the store every query is scored against (its background).
REFERENCE = 64
#: Entries of the store searched against the reference sample to calibrate.
CALIBRATION = 32
#: A store needs this many entries for a significance.
MIN_ENTRIES = 20
#: The null distribution is fitted to these quantiles of the excess of pairs
#: (the upper half: the tail the E-values extrapolate)...
FIT_QUANTILES = np.linspace(0.5, 0.95, 10)
#: ...after a first fit to these (the middle half), which related pairs among
#: the sampled ones do not reach.
ROBUST_QUANTILES = np.linspace(0.25, 0.75, 11)
#: The null distribution's shape (a key of :data:`SHAPES`). Chosen on the
#: calibration draw of ``python -m benchmarks.bench_significance`` (seed 1): the
#: unrelated hits at E < 1 per query came closest to 1 with it (0.50; gumbel
#: 0.04, logistic 0.08): the excess of unrelated pairs has a light upper tail.
SHAPE = "normal"
#: Pairs whose tail probability is below this are left out of the fit as related.
TRIM_P = 0.01
#: A hit is significant below this E-value: on the same calibration draw, the
#: loosest of 1, 0.1, 0.01, 0.001 that let at most 0.05 unrelated hits per query
#: pass (none). On the held-out draw (seed 2): 0.04 unrelated hits per query,
#: and half the relatives, pass (docs/search.md).
EVALUE_THRESHOLD = 0.1
#: MAD to standard deviation of a normal distribution.
_MAD_SD = 1.4826
#: The smallest spread of a background (a floor for degenerate samples).
_MIN_SPREAD = 1e-4
#: Where null models are kept between processes.
CACHE = Path.home() / ".cache" / "cryo-swan" / "significance"
#: Entries' own backgrounds (:meth:`NullModels.centers`) kept in memory.
CENTERS_KEEP = 200_000
#: Bump when the null model's computation changes.
_VERSION = 3


# -- the reference sample ----------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Reference:
    """The store's reference sample: what a query's background is scored on.

    Attributes:
        ids: entry ids ``[m]``.
        vectors: per scale ``[m, dim]``.
        rg: radii of gyration ``[m]`` (NaN: unknown).
        previews: ``id -> preview`` of those that have one.
    """

    ids: np.ndarray
    vectors: list[np.ndarray]
    rg: np.ndarray
    previews: dict[int, np.ndarray]

    @classmethod
    def read(cls, store: Any, ids: np.ndarray) -> Reference:
        """Read the sample's codes, sizes and previews from ``store``."""
        ids = np.asarray(ids, np.int64)
        codes = [store.encoder.query_vectors(store.get_code(int(i))) for i in ids]
        vectors = [np.concatenate([c[s] for c in codes]) for s in range(len(codes[0]))]
        rows = {int(r["id"]): r.get("rg") for r in store.get(ids)}
        rg = np.array(
            [np.nan if rows.get(int(i)) is None else rows[int(i)] for i in ids],
            np.float64,
        )
        return cls(ids, vectors, rg, store.get_previews(ids))

    def without(self, entry_id: int | None) -> Reference:
        """The sample less one entry (a query scored against itself is no null)."""
        keep = self.ids != entry_id
        if entry_id is None or keep.all():
            return self
        vectors = [v[keep] for v in self.vectors]
        return Reference(self.ids[keep], vectors, self.rg[keep], self.previews)


@dataclass(frozen=True)
class Background:
    """A query's scores against the reference sample, summarised robustly.

    Attributes:
        center: the median score (where this query's unrelated entries lie).
        scale_center, scale_spread: per scale side, the median cosine and
            1.4826 x its median absolute deviation.
        scores: the scores themselves ``[m]``.
    """

    center: float
    scale_center: dict[str, float]
    scale_spread: dict[str, float]
    scores: np.ndarray


def _robust(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * _MAD_SD
    return med, max(mad, _MIN_SPREAD)


def background(
    reference: Reference,
    vectors: list[np.ndarray],
    rg: float | None,
    options: SearchOptions,
    scales: tuple[int, ...],
    fit: FitQuery | None,
) -> Background:
    """Score a query against the reference sample as a search scores its hits
    (the rotational fit without its local refinement, which costs most).

    Args:
        reference: the sample (without the query's own entry).
        vectors: the query's vectors per store scale ``[P, dim]``.
        rg: the query's radius of gyration (``None``: no size term).
        options: the search's options (scales, weights, size and fit weights).
        scales: the store's scale sides.
        fit: the query's turned volumes, when the search re-scores by the fit.
    """
    sel, weights = options.scale_weights(scales)
    per_scale = [vectors[i] @ reference.vectors[i].T for i in sel]
    ranking = score_candidates(
        reference.ids,
        per_scale,
        [scales[i] for i in sel],
        weights,
        size_gap(rg, reference.rg),
        options.size_weight,
        len(reference.ids),
    )
    if fit is not None:  # as apply_fit does, without the local refinement
        have = [
            j
            for j, i in enumerate(reference.ids)
            if int(i) in reference.previews
            and comparable(reference.previews[int(i)].shape[0], fit.grid)
        ]
        if have:
            fitted = fit.score(
                [reference.previews[int(reference.ids[j])] for j in have],
                shift=0,
                refine=0,
            )
            ranking.score[have] += options.fit_weight * (fitted - ranking.shape[have])
    scale = {side: _robust(s) for side, s in ranking.per_scale.items()}
    return Background(
        float(np.median(ranking.score)),
        {side: c for side, (c, _) in scale.items()},
        {side: s for side, (_, s) in scale.items()},
        np.asarray(ranking.score, np.float64),
    )


# -- the null model ----------------------------------------------------------------
#: Tail shapes a null model may have (scipy.stats distributions).
SHAPES = {"normal": stats.norm, "gumbel": stats.gumbel_r, "logistic": stats.logistic}


@dataclass(frozen=True)
class NullModel:
    """The distribution of the excess (score minus the query's background
    median) of unrelated pairs in one store, for one way of searching.

    Attributes:
        key: the store content and options it was fitted for.
        entries: entries in the store.
        shape: the distribution (a key of :data:`SHAPES`).
        loc, scale: its location and scale (on the excess).
        pairs: the pairs it was fitted on.
        trimmed: of them, those left out as related (see :func:`fit_tail`).
        reference_ids: the reference sample.
        reference_sha256: the content hashes of its maps (a store whose ids
            are the same but whose maps are not, another store, is told apart).
    """

    key: str
    entries: int
    shape: str
    loc: float
    scale: float
    pairs: int
    trimmed: int
    reference_ids: tuple[int, ...]
    reference_sha256: tuple[str | None, ...] = ()

    def pvalue(self, excess: np.ndarray | float) -> np.ndarray:
        """P(excess >= x) for an unrelated pair."""
        return SHAPES[self.shape].sf(excess, loc=self.loc, scale=self.scale)

    def evalue(self, excess: np.ndarray | float) -> np.ndarray:
        """Unrelated entries expected at this excess or above in this store."""
        return self.entries * self.pvalue(excess)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "version": _VERSION}


def fit_tail(
    values: np.ndarray, shape: str = SHAPE, rounds: int = 3
) -> tuple[float, float, int]:
    """Location and scale of the ``shape`` distribution fitted to the upper
    part of ``values``: least squares between its quantiles and theirs at
    :data:`FIT_QUANTILES` (the tail the E-values extrapolate).

    A random sample of pairs holds related ones too (in a store of families, a
    few percent, and more in a small store), far above the unrelated: they
    would make the tail heavier than it is. So the first fit is on the middle
    half of the values (:data:`ROBUST_QUANTILES`, which they do not reach
    below a quarter of the sample), and each of ``rounds`` fits leaves out the
    values whose tail probability under the previous fit is below
    :data:`TRIM_P` (counted as ``trimmed``; the quantiles of what is kept are
    taken as the null's at ``q x (1 - TRIM_P)``).

    Returns:
        ``(loc, scale, trimmed)``.

    Raises:
        ValueError: fewer than 10 values, or no spread.
    """
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 10:
        raise ValueError(f"{len(values)} null scores: need at least 10 to fit")
    dist = SHAPES[shape]

    def fit(kept: np.ndarray, q: np.ndarray, at: np.ndarray) -> tuple[float, float]:
        scale, loc = np.polyfit(dist.ppf(at), np.quantile(kept, q), 1)
        if not scale > 0:
            raise ValueError("null scores without spread: cannot fit")
        return loc, scale

    loc, scale = fit(values, ROBUST_QUANTILES, ROBUST_QUANTILES)
    kept = values
    for _ in range(rounds):
        kept = values[dist.sf(values, loc=loc, scale=scale) >= TRIM_P]
        at = FIT_QUANTILES * (1 - TRIM_P) if len(kept) < len(values) else FIT_QUANTILES
        new = fit(kept, FIT_QUANTILES, at)
        if np.allclose(new, (loc, scale), rtol=1e-3, atol=1e-6):
            break
        loc, scale = new
    return float(loc), float(scale), int(len(values) - len(kept))


def content_key(store: Any, options: SearchOptions, fit: bool) -> str:
    """What the null model depends on: the encoder, the ids the store holds
    (never reused, so an add or a delete changes them) and how it searches."""
    h = hashlib.sha256()
    h.update(store.encoder.hash.encode())
    h.update(np.ascontiguousarray(store.ids, np.int64).tobytes())
    how = (
        options.scales,
        options.weights,
        options.size_weight,
        options.fit_weight if fit else None,
        _VERSION,
        SHAPE,
        REFERENCE,
        CALIBRATION,
    )
    h.update(repr(how).encode())
    return h.hexdigest()[:32]


def null_sample(
    store: Any, options: SearchOptions, fit: bool, key: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The excess of random pairs of the store: ``(reference ids, excess)``
    (``None`` under :data:`MIN_ENTRIES`).

    The reference sample and the calibration entries are drawn at random,
    seeded by ``key`` (the same store gives the same sample); each calibration
    entry is searched with its stored vectors and preview, as ``swan search ID
    --stored-pose`` searches it, against the reference sample less itself.
    """
    ids = np.asarray(store.ids, np.int64)
    if len(ids) < MIN_ENTRIES:
        return None
    rng = np.random.default_rng(int(key[:16], 16))
    ref_ids = np.sort(rng.choice(ids, min(REFERENCE, len(ids)), replace=False))
    cal_ids = rng.choice(ids, min(CALIBRATION, len(ids)), replace=False)
    reference = Reference.read(store, ref_ids)
    rows = {int(r["id"]): r.get("rg") for r in store.get(cal_ids)}
    excess = []
    for entry_id in cal_ids:
        bg = stored_background(
            store, reference, int(entry_id), rows.get(int(entry_id)), options, fit
        )
        excess.append(bg.scores - bg.center)
    return ref_ids, np.concatenate(excess)


def stored_background(
    store: Any,
    reference: Reference,
    entry_id: int,
    rg: float | None,
    options: SearchOptions,
    fit: bool,
) -> Background:
    """A stored entry searched with its stored vectors and preview (as ``swan
    search ID --stored-pose`` searches it) against the reference sample less
    itself: its :class:`Background`."""
    vectors = store.encoder.query_vectors(store.get_code(entry_id))
    turned = fit_query(store.get_preview(entry_id)) if fit else None
    return background(
        reference.without(entry_id),
        vectors,
        rg,
        options,
        store.encoder.scales,
        turned,
    )


def calibrate(
    store: Any, options: SearchOptions, fit: bool, key: str | None = None
) -> NullModel | None:
    """Fit the null model of ``store`` (``None`` under :data:`MIN_ENTRIES`):
    :func:`fit_tail` on :func:`null_sample`."""
    key = key or content_key(store, options, fit)
    got = null_sample(store, options, fit, key)
    if got is None:
        return None
    return model_of(key, len(store.ids), *got, sha256=sha256_of(store, got[0]))


def sha256_of(store: Any, ids: Any) -> tuple[str | None, ...]:
    """The content hashes of the maps of ``ids`` (in that order)."""
    rows = {int(r["id"]): r.get("sha256") for r in store.get(ids)}
    return tuple(rows.get(int(i)) for i in ids)


def model_of(
    key: str,
    entries: int,
    ref_ids: np.ndarray,
    excess: np.ndarray,
    shape: str = SHAPE,
    sha256: tuple[str | None, ...] = (),
) -> NullModel:
    """The null model of a null sample (:func:`null_sample`) whose reference
    maps have these ``sha256``."""
    loc, scale, trimmed = fit_tail(excess, shape)
    return NullModel(
        key,
        entries,
        shape,
        loc,
        scale,
        len(excess),
        trimmed,
        tuple(int(i) for i in ref_ids),
        tuple(sha256),
    )


class NullModels:
    """Null models by store content and options: in memory (a few), and on
    disk in ``cache`` (``None``: memory only), with each one's reference sample.
    Thread-safe; a model is fitted once even when several searches ask at once.
    """

    def __init__(self, cache: Path | None = CACHE, keep: int = 8) -> None:
        self.cache = cache
        self.keep = keep
        self._models: OrderedDict[str, tuple[NullModel, Reference]] = OrderedDict()
        self._centers: OrderedDict[tuple, float] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, store: Any, options: SearchOptions, fit: bool
    ) -> tuple[NullModel, Reference] | None:
        """The null model of ``store`` as it is now, for this way of searching,
        and its reference sample (``None``: too few entries)."""
        key = content_key(store, options, fit)
        mem = f"{key} {Path(store.path).resolve()}"
        with self._lock:
            if mem in self._models:
                self._models.move_to_end(mem)
                return self._models[mem]
            model = self._load(key)
            if model is not None:  # the same ids: the same maps too?
                ref = np.array(model.reference_ids)
                if sha256_of(store, ref) != model.reference_sha256:
                    model = None
            if model is None:
                model = calibrate(store, options, fit, key)
                if model is None:
                    return None
                self._save(model)
            got = (model, Reference.read(store, np.array(model.reference_ids)))
            self._models[mem] = got
            while len(self._models) > self.keep:
                self._models.popitem(last=False)
            return got

    def centers(
        self, store: Any, ids: Any, options: SearchOptions, fit: bool
    ) -> dict[int, float]:
        """Each entry's own background: the median score of the reference
        sample against it, the entry searched as the calibration searches it
        (:func:`stored_background`); ``{}`` when the store has no null model.

        A query's background is the level of its unrelated entries; an
        entry's is the level at which it meets unrelated queries. An entry that
        scores high against everything (a *hub*: a compact or featureless map
        the rotational fit likes whatever the query) has a high one; taking
        both off a score makes it symmetric (as the S-norm of speaker
        verification does). About 0.1 s an entry with the fit; kept in memory
        (:data:`CENTERS_KEEP`) by null model, so an entry costs once per store
        content and way of searching.
        """
        got = self.get(store, options, fit)
        if got is None:
            return {}
        model, reference = got
        wanted = list(dict.fromkeys(int(i) for i in ids))
        rows = {int(r["id"]): r for r in store.get(wanted)} if wanted else {}
        where = str(Path(store.path).resolve())

        def key(i: int) -> tuple[str, str, int, str | None]:
            # another store (or a rebuilt one) may hold the same ids: its path
            # and the entry's content tell them apart
            return (model.key, where, i, rows.get(i, {}).get("sha256"))

        out: dict[int, float] = {}
        with self._lock:
            for i in wanted:
                if key(i) in self._centers:
                    out[i] = self._centers[key(i)]
        todo = [i for i in wanted if i not in out and i in rows]
        if todo:
            for i in todo:
                rg = rows[i].get("rg")
                out[i] = stored_background(store, reference, i, rg, options, fit).center
            with self._lock:
                for i in todo:
                    self._centers[key(i)] = out[i]
                while len(self._centers) > CENTERS_KEEP:
                    self._centers.popitem(last=False)
        return out

    def put(self, store: Any, model: NullModel) -> None:
        """Keep ``model`` (fitted elsewhere) for ``store`` as it is now."""
        reference = Reference.read(store, np.array(model.reference_ids))
        with self._lock:
            self._models[f"{model.key} {Path(store.path).resolve()}"] = (
                model,
                reference,
            )

    def _path(self, key: str) -> Path | None:
        return None if self.cache is None else self.cache / f"null-{key}.json"

    def _load(self, key: str) -> NullModel | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if data.pop("version", None) != _VERSION:
                return None
            data["reference_ids"] = tuple(data["reference_ids"])
            data["reference_sha256"] = tuple(data.get("reference_sha256", ()))
            return NullModel(**data)
        except (OSError, ValueError, TypeError) as err:
            log.warning("%s: unreadable null model (%s); fitting it again", path, err)
            return None

    def _save(self, model: NullModel) -> None:
        path = self._path(model.key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(model.to_dict()))
        except OSError as err:  # a cache only: the next process fits it again
            log.warning("%s: cannot keep the null model (%s)", path, err)


#: The null models of this process.
MODELS = NullModels()


# -- hits --------------------------------------------------------------------------
@dataclass(frozen=True)
class Significance:
    """What a search's hits are worth, as a whole.

    Attributes:
        formula: how the score is made (:func:`formula`).
        threshold: the E-value below which a hit is significant.
        entries: entries in the store (the N of the E-values).
        significant: hits below the threshold.
        message: one line for the user: how many hits are significant, or "no
            significant match", or why there is no significance.
        null: the null model's parameters (``None`` when there is none).
    """

    formula: str
    threshold: float
    entries: int
    significant: int | None
    message: str
    null: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class StoreNull:
    """What judging a search's hits needs from the store, read at once (a
    server holds its store for this part only; :func:`judge` needs nothing
    from it).

    Attributes:
        model: the null model (``None``: too few entries).
        reference: its reference sample.
        entries: entries in the store.
        scales: the store's scale sides.
        encoder: the store's encoder identity (to read query codes).
    """

    model: NullModel | None
    reference: Reference | None
    entries: int
    scales: tuple[int, ...]
    encoder: Any

    @classmethod
    def read(
        cls,
        store: Any,
        options: SearchOptions,
        fitted: bool,
        models: NullModels | None = None,
    ) -> StoreNull:
        """The store's null model for this way of searching (fitted now, when
        the store changed since the last one)."""
        got = (models or MODELS).get(store, options, fitted)
        model, reference = got if got is not None else (None, None)
        return cls(model, reference, store.count(), store.encoder.scales, store.encoder)


def assess(
    store: Any,
    hits: list[Hit],
    code: MultiScaleCode,
    rg: float | None,
    options: SearchOptions,
    fit: FitQuery | None,
    exclude: int | None = None,
    models: NullModels | None = None,
    threshold: float = EVALUE_THRESHOLD,
) -> tuple[list[Hit], Significance]:
    """Give each hit its score's terms, excess, per-scale z and E-value:
    :meth:`StoreNull.read` then :func:`judge`.

    Args:
        store: the store searched (read here: the caller holds it).
        hits: the search's hits.
        code: the query's code (all its poses).
        rg: the query's radius of gyration.
        options: the search's options.
        fit: the query's turned volumes when the fit re-scored the hits.
        exclude: the query's own entry, when it is stored.
        models: where null models are kept (default :data:`MODELS`).
        threshold: E-value of a significant hit.

    Returns:
        The hits with ``shape``, ``terms``, ``excess``, ``scale_z``, ``pvalue``,
        ``evalue`` and ``significant`` filled, and the :class:`Significance` of
        the whole.
    """
    fitted = fit is not None and options.fit_top > 0
    null = StoreNull.read(store, options, fitted, models)
    return judge(null, hits, code, rg, options, fit, exclude, threshold)


def judge(
    null: StoreNull,
    hits: list[Hit],
    code: MultiScaleCode,
    rg: float | None,
    options: SearchOptions,
    fit: FitQuery | None,
    exclude: int | None = None,
    threshold: float = EVALUE_THRESHOLD,
) -> tuple[list[Hit], Significance]:
    """:func:`assess` with the store's part already read (computation only)."""
    scales = null.scales
    fitted = fit is not None and options.fit_top > 0
    how = formula(options, scales, fitted)
    hits = [
        dataclasses.replace(
            h,
            shape=shape_score(h.scores, options, scales),
            terms=score_terms(h.scores, options, scales),
        )
        for h in hits
    ]
    n = null.entries
    if null.model is None:
        msg = (
            f"no significance: the store holds {n} entries, fewer than the "
            f"{MIN_ENTRIES} a null model needs"
        )
        return hits, Significance(how, threshold, n, None, msg, None)
    model = null.model
    bg = background(
        null.reference.without(exclude),
        null.encoder.query_vectors(code),
        rg,
        options,
        scales,
        fit if fitted else None,
    )
    out = []
    for h in hits:
        excess = h.score - bg.center
        e = float(model.evalue(excess))
        scale_z = {
            side: (h.scores[side] - bg.scale_center[side]) / bg.scale_spread[side]
            for side in bg.scale_center
            if side in h.scores
        }
        out.append(
            dataclasses.replace(
                h,
                excess=float(excess),
                scale_z=scale_z,
                pvalue=float(model.pvalue(excess)),
                evalue=e,
                significant=bool(e < threshold),
            )
        )
    count = sum(1 for h in out if h.significant and h.id != exclude)
    if count:
        plural = "es" if count > 1 else ""
        msg = f"{count} significant match{plural} (E < {threshold:g})"
    else:
        others = [h for h in out if h.id != exclude]
        best = f"; the best hit has E = {others[0].evalue:.2g}" if others else ""
        msg = f"no significant match (E < {threshold:g}){best}"
    null = {**model.to_dict(), "background_median": bg.center}
    return out, Significance(how, threshold, n, count, msg, null)
