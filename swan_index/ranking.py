"""Ranking: scoring candidate entries against a query, on arrays.

A search (:meth:`swan_index.store.Store.rank`) gives this module the query's
retrieval vectors and the candidates' vectors; everything here is arithmetic on
those arrays, with no database and no model:

* :func:`coarse_candidates`: the entries nearest the query at the coarsest scale
  (union over the query's poses), optionally pruned by the size term;
* :func:`score_candidates`: each candidate's per-scale cosines in the query pose
  that scores it best, the shape score (their weighted mean) and the combined
  score (shape minus ``size_weight * |ln(rg_query / rg_entry)|``);
* :func:`top_rows`: the order of the best scores.

A search is coarse-to-fine (the options are :class:`SearchOptions`):

1. ``where`` (a SQL predicate over ``entries``) is run read-only and gives the
   allowed ids.
2. Candidates: the ``overfetch * k`` (at least ``min_candidates``) entries with
   the best approximate shape score in the joint index over all scales
   (:mod:`swan_index.joint`; stores above their approximate threshold), else the
   nearest at the coarsest scale, for each query pose, restricted to the allowed
   ids. With an approximate (IVF) index the scan widens until enough allowed
   entries are found, so a filter matching at least k entries always gives k
   hits. When the filter leaves few entries (``<= exact_filter_limit``) they are
   all scored.
3. Re-ranking: every candidate is scored at every scale by cosine similarity of
   the retrieval vectors. The shape score is the weighted mean of the per-scale
   cosines (equal weights unless ``weights`` is given); an entry's score is its best
   over the query poses, minus ``size_weight * |ln(rg_query / rg_entry)|`` when the
   query's radius of gyration is known (a ribosome should not match a small protein
   just because their shapes rhyme).
4. Rotational fit (:func:`swan_index.fit.apply_fit`, when the caller has the
   query's volumes): the best ``fit_top`` entries get, as their shape score,
   ``1 - fit_weight`` of it plus ``fit_weight`` times the best correlation of the
   query over all rotations with their stored previews; only they compete for the
   k hits. An entry without a preview (only a store built by hand lacks them)
   keeps its learned score, as if its fit equalled its shape score.

The steps run as :meth:`Store.rank` (1-3, reads the store),
:func:`swan_index.fit.apply_fit` (4, computation only) and :meth:`Store.hits` (the
metadata of the best k), so that a server can run the fit, the costly step,
without holding the store.

``exact=True`` skips step 2 and scores every allowed entry (the ground truth).

The options of a search are one frozen :class:`SearchOptions`; its result, between
the stages rank -> fit -> hits, is a :class:`Ranking`; each listed result is a
:class:`Hit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swan_index.joint import (
    JOINT_MIN_CANDIDATES,
    JOINT_OVERFETCH,
    JointIndex,
)
from swan_index.vectors import ScaleIndex

#: A filter leaving at most this many entries scores them all exactly.
EXACT_FILTER_LIMIT = 20_000
#: Default weight of the size term in the search score. Measured on the held-out
#: test split of the training dataset (399 maps, nearest neighbour of the same
#: molecule, mean of the four scale cosines): precision@1 0.865 without the size
#: term, 0.889 / 0.899 / 0.885 / 0.861 / 0.841 with weights 0.02 / 0.05 / 0.1 /
#: 0.2 / 0.5 (the cosines of this checkpoint's vectors span a narrow range).
SIZE_WEIGHT = 0.05
#: With a size term, the coarse stage fetches this many times the candidates and
#: keeps the best by coarse cosine minus the size term.
PRUNE_FACTOR = 4
#: First-stage candidates from a scale's index: max(OVERFETCH x k, MIN_CANDIDATES).
OVERFETCH = 200
MIN_CANDIDATES = 2000
#: Hits of the vector search that the rotational fit re-scores.
FIT_TOP = 200
#: Weight of the fit in the re-scored hits' score; the rest is the learned score.
FIT_WEIGHT = 0.5


@dataclass(frozen=True)
class SearchOptions:
    """How a search ranks (everything but the query and ``k``).

    Attributes:
        where: SQL predicate over ``entries``, e.g. ``"resolution < 4"``
            (:mod:`swan_index.where`).
        scales: scale sides to score with (default all); the coarsest of them
            gives the candidates.
        exact: score every (allowed) entry instead of coarse candidates.
        size_weight: weight of ``|ln(rg_q / rg_e)|``; 0 disables it.
        weights: per selected scale, for the shape score (default equal).
        overfetch, min_candidates: first-stage candidates = max(overfetch * k,
            min_candidates) per pose (default: 100 and 1,000 from the joint index,
            whose order is nearly the final one; 200 and 2,000 from a scale's).
        nprobe: IVF lists of the joint index scanned at first (default
            :data:`swan_index.joint.JOINT_NPROBE`, over the share of entries a
            filter leaves; a scale's index is exact).
        exact_filter_limit: a filter leaving at most this many entries scores
            them all.
        fit_top: how many of the best entries the rotational fit re-scores
            (at least ``k``); 0 turns the fit off.
        fit_weight: the fit's weight against the learned shape score, in [0, 1].
        joint: take the candidates from the joint index over all scales
            (:mod:`swan_index.joint`) where the store has one (above its
            approximate threshold); ``False``: from the coarsest selected scale's
            index, as stores did before it (kept for comparison).

    Raises:
        ValueError: negative weights, ``fit_top`` or ``fit_weight`` out of range.
    """

    where: str | None = None
    scales: tuple[int, ...] | None = None
    exact: bool = False
    size_weight: float = SIZE_WEIGHT
    weights: tuple[float, ...] | None = None
    overfetch: int | None = None
    min_candidates: int | None = None
    nprobe: int | None = None
    exact_filter_limit: int = EXACT_FILTER_LIMIT
    fit_top: int = FIT_TOP
    fit_weight: float = FIT_WEIGHT
    joint: bool = True

    def __post_init__(self) -> None:
        if self.scales is not None:
            object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not 0.0 <= self.fit_weight <= 1.0:
            raise ValueError(f"fit_weight={self.fit_weight}: use a weight in [0, 1]")
        if self.fit_top < 0:
            raise ValueError(f"fit_top={self.fit_top}: use 0 (off) or more")

    def candidates(self, k: int, joint: bool) -> int:
        """First-stage candidates for ``k`` hits, from the joint index or not."""
        over = OVERFETCH if self.overfetch is None else self.overfetch
        least = MIN_CANDIDATES if self.min_candidates is None else self.min_candidates
        if joint:
            over = JOINT_OVERFETCH if self.overfetch is None else over
            least = JOINT_MIN_CANDIDATES if self.min_candidates is None else least
        return max(over * k, least)

    def scale_weights(self, store_scales: tuple[int, ...]) -> tuple[list[int], Any]:
        """Positions of the selected scales in ``store_scales`` (in the order
        given: weights follow it) and their normalised weights.

        Raises:
            ValueError: unknown or repeated scales, bad weights.
        """
        sides = tuple(store_scales) if self.scales is None else self.scales
        bad = [s for s in sides if s not in store_scales]
        if bad or not sides:
            raise ValueError(f"scales {self.scales}: choose from {store_scales}")
        if len(set(sides)) != len(sides):
            raise ValueError(f"scales {self.scales}: each scale once")
        sel = [store_scales.index(s) for s in sides]
        w = (
            np.ones(len(sel))
            if self.weights is None
            else np.asarray(self.weights, np.float64)
        )
        if w.shape != (len(sel),) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"weights {self.weights}: one non-negative weight per scale"
            )
        return sel, w / w.sum()


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1-based.
        id: store entry id.
        score: combined score (see :mod:`swan_index.store`); higher is more
            similar.
        scores: per scale side (``"1"``, ``"2"``...) the cosine similarity, plus
            ``"size"``: ``ln(rg_query / rg_entry)`` when both are known, and
            ``"fit"``: the rotational fit's correlation when it re-scored the hit.
        pose: index of the query pose that scored best.
        entry: the entry's ``emdb_id``, ``title``, ``method``, ``resolution``,
            ``label`` and ``rg``.
        shape: the shape score: the weighted mean of the per-scale cosines.
        terms: the terms the score is the sum of: ``shape`` (the shape score's
            share), ``fit`` (the rotational fit's share, when it re-scored the
            hit) and ``size`` (minus the size term); see
            :func:`score_terms`.
        excess: the score minus the query's background: the median score of
            the store's reference sample against the query
            (:mod:`swan_index.significance`).
        scale_z: per scale side, the cosine against the query's background at
            that scale: (cosine - median) / (1.4826 MAD).
        pvalue: probability that an unrelated entry has at least this excess.
        evalue: unrelated entries expected to score at least this high in a
            store of this size.
        significant: ``evalue`` below the threshold
            (:data:`swan_index.significance.EVALUE_THRESHOLD`).

    The last seven are filled by :func:`swan_index.significance.assess` (``None``
    or empty before).
    """

    rank: int
    id: int
    score: float
    scores: dict[str, float]
    pose: int
    entry: dict[str, Any]
    shape: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    excess: float | None = None
    scale_z: dict[str, float] = field(default_factory=dict)
    pvalue: float | None = None
    evalue: float | None = None
    significant: bool | None = None

    @property
    def emdb_id(self) -> str | None:
        return self.entry.get("emdb_id")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "emdb_id": self.emdb_id,
            "score": self.score,
            "scores": self.scores,
            "pose": self.pose,
            "shape": self.shape,
            "terms": self.terms,
            "excess": self.excess,
            "scale_z": self.scale_z,
            "pvalue": self.pvalue,
            "evalue": self.evalue,
            "significant": self.significant,
            **{k: v for k, v in self.entry.items() if k != "emdb_id"},
        }


@dataclass
class Ranking:
    """A search between its stages (:meth:`Store.rank`,
    :func:`swan_index.fit.apply_fit`, :meth:`Store.hits`): the candidates with
    their scores, and the stored previews of those the rotational fit re-scores.

    The fit needs nothing from the store, so a server can run it without holding
    the store (see :mod:`dashboard.service`).
    """

    cand: np.ndarray  # entry ids
    score: np.ndarray  # [n] combined score
    shape: np.ndarray  # [n] shape score in the best pose
    pose: np.ndarray  # [n] best query pose
    per_scale: dict[str, np.ndarray]  # scale side -> [n] cosine in the best pose
    log_ratio: np.ndarray  # [n] ln(rg_query / rg_entry), NaN when unknown
    k: int
    fit_rows: np.ndarray | None = None  # positions the fit re-scores
    previews: dict[int, np.ndarray] = field(default_factory=dict)
    fit_weight: float = FIT_WEIGHT
    fit_of: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def empty(cls) -> Ranking:
        """No candidates (a filter matched nothing)."""
        none, ids = np.zeros(0), np.zeros(0, np.int64)
        return cls(ids, none, none, ids, {}, none, 0)

    def hit_scores(self, j: int) -> dict[str, float]:
        """``Hit.scores`` of the candidate at position ``j``."""
        scores = {side: float(s[j]) for side, s in self.per_scale.items()}
        if not np.isnan(self.log_ratio[j]):
            scores["size"] = float(self.log_ratio[j])
        if len(self.fit_of) and not np.isnan(self.fit_of[j]):
            scores["fit"] = float(self.fit_of[j])
        return scores


def size_gap(rg: float | None, cand_rg: np.ndarray) -> np.ndarray:
    """``ln(rg / cand_rg)`` per candidate; NaN where a size is unknown."""
    if rg is None or not rg > 0:
        return np.full(len(cand_rg), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log(rg / cand_rg)


def score_candidates(
    cand: np.ndarray,
    per_scale: list[np.ndarray],
    sides: list[int],
    weights: np.ndarray,
    log_ratio: np.ndarray,
    size_weight: float,
    k: int,
) -> Ranking:
    """Score candidates from their per-scale cosines.

    Args:
        cand: entry ids ``[n]``.
        per_scale: per selected scale, cosines ``[P, n]`` (P query poses).
        sides: the selected scales' sides (keys of ``Ranking.per_scale``).
        weights: per selected scale, summing to 1.
        log_ratio: ``ln(rg_query / rg_entry)`` ``[n]`` (:func:`size_gap`).
        size_weight: weight of ``|log_ratio|`` (unknown sizes add nothing).
        k: hits wanted.
    """
    shape = sum(wi * s for wi, s in zip(weights, per_scale, strict=True))  # [P, n]
    pose = np.argmax(shape, axis=0)
    cols = np.arange(len(cand))
    best = shape[pose, cols]
    score = best - size_weight * np.nan_to_num(np.abs(log_ratio), nan=0.0)
    return Ranking(
        cand,
        score,
        best,
        pose,
        {str(side): s[pose, cols] for side, s in zip(sides, per_scale, strict=True)},
        log_ratio,
        k,
    )


def fit_rows(score: np.ndarray, k: int, fit_top: int) -> np.ndarray:
    """Positions of the ``max(k, fit_top)`` best scores, best first."""
    n_fit = int(min(len(score), max(k, fit_top)))
    return np.argsort(-score, kind="stable")[:n_fit]


def top_rows(score: np.ndarray, want: int) -> np.ndarray:
    """Positions of the ``want`` best scores, best first (ties in order)."""
    if want < len(score) / 4:  # partial sort: only the top ones ordered
        part = np.argpartition(-score, want - 1)[:want]
        return part[np.argsort(-score[part], kind="stable")]
    return np.argsort(-score, kind="stable")[:want]


def coarse_candidates(
    index: ScaleIndex | JointIndex,
    q: np.ndarray,
    n_cand: int,
    k: int,
    allowed: np.ndarray | None,
    nprobe: int,
    size_of: Callable[[np.ndarray], np.ndarray] | None = None,
    size_weight: float = 0.0,
    prune_factor: int = PRUNE_FACTOR,
) -> np.ndarray:
    """The first stage of a search: entries nearest the query ``q`` ``[P, d]``
    in ``index`` (union over poses), at most ``n_cand`` of them, sorted.

    Args:
        index: the joint index over all scales (:mod:`swan_index.joint`) or,
            where the store has none, the coarsest selected scale's index.
        q: the query's vectors in that index, one row per pose.
        n_cand: candidates wanted.
        k: hits wanted (an unfiltered IVF scan stops widening at k).
        allowed: ids a filter allows (``None``: all).
        nprobe: IVF lists scanned at first; the scan widens until it finds the
            candidates asked for (or all allowed entries), because a filter may
            leave few entries in the lists scanned.
        size_of: ``ln(rg_query / rg_entry)`` of given ids, when the query's size
            is known: then ``prune_factor`` times as many are fetched and ranked
            by coarse cosine minus the size term first, so that the candidates
            agree with the final score, which weighs size too.
        size_weight: weight of the size term.
        prune_factor: see ``size_of``.
    """
    need = k if allowed is None else min(n_cand, len(allowed))
    sized = size_of is not None and size_weight > 0
    n_fetch = n_cand * prune_factor if sized else n_cand
    while True:
        sims, found = index.search(q, n_fetch, allowed, nprobe)
        ok = found >= 0
        if len(q) == 1:  # one pose: its ids are unique already
            cand, best = found[ok], sims[ok].astype(np.float64)
        else:  # an entry found under several poses keeps its best
            cand, inverse = np.unique(found[ok], return_inverse=True)
            best = np.full(len(cand), -np.inf)
            np.maximum.at(best, inverse, sims[ok])
        if len(cand) > n_cand:
            if sized:
                gap = np.abs(size_of(cand))
                best -= size_weight * np.nan_to_num(gap, nan=0.0)
            cand = cand[np.argpartition(-best, n_cand - 1)[:n_cand]]
        cand = np.sort(cand)
        if len(cand) >= need or index.kind != "ivf" or nprobe >= index.nlist:
            return cand
        nprobe *= 4  # the filter left too few in the lists scanned: widen


def formula(options: SearchOptions, scales: tuple[int, ...], fit: bool) -> str:
    """How the score of a search with ``options`` is made, in one line."""
    sides = scales if options.scales is None else options.scales
    mean = "mean" if options.weights is None else "weighted mean"
    shape = f"shape = {mean} cosine over scales {', '.join(map(str, sides))}"
    size = f"{options.size_weight:g} x |ln(Rg_query / Rg_entry)|"
    if fit and options.fit_top > 0 and options.fit_weight > 0:
        w = options.fit_weight
        return f"score = {1 - w:g} x shape + {w:g} x fit - {size}; {shape}"
    return f"score = shape - {size}; {shape}"


def shape_score(
    scores: dict[str, float], options: SearchOptions, scales: tuple[int, ...]
) -> float:
    """The shape score of a hit: the weighted mean of its per-scale cosines
    (``Hit.scores``) in the search's weights."""
    sel, weights = options.scale_weights(scales)
    return float(np.dot(weights, [scores[str(scales[i])] for i in sel]))


def score_terms(
    scores: dict[str, float], options: SearchOptions, scales: tuple[int, ...]
) -> dict[str, float]:
    """The terms a hit's score is the sum of: ``shape`` (the weighted shape
    score's share), ``fit`` (the rotational fit's share, when it re-scored the
    hit) and ``size`` (minus the size term).

    Args:
        scores: ``Hit.scores``.
        options: the search's options.
        scales: the store's scale sides.
    """
    shape = shape_score(scores, options, scales)
    terms = {"shape": shape}
    if "fit" in scores:
        terms["shape"] = (1.0 - options.fit_weight) * shape
        terms["fit"] = options.fit_weight * float(scores["fit"])
    terms["size"] = -options.size_weight * abs(float(scores.get("size", 0.0)))
    return terms
