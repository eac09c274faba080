"""The latent prior (:mod:`encoder.prior`) behind the API and the dashboard:
denoising or completing an uploaded map, variations of a stored entry, and maps
drawn from the prior alone.

Everything made here is generated, not measured: every MRC file carries the
header label :data:`ingest.mapio.GENERATED_LABEL` (``swan ingest`` refuses such a
file unless asked), and file names start with ``denoised_``, ``completed_``,
``variation_`` or ``generated_``.

A variation keeps the first ``keep`` scales of the entry's *stored* code exactly
and draws the finer ones from the prior, so it needs no map file (entries
simulated from models have variations too). Variations and draws come out in the
canonical frame: a cube of the encoder's grid, written with 1 Å voxels centred on
the origin (the canonical frame has no physical scale). A denoised or completed
upload goes back onto the upload's own grid, voxel size and origin, as
``swan denoise`` and ``swan complete`` do (one path, completion at a larger
default strength).
A search with completion (``swan search --complete`` for an upload) searches with
the upload and with its completion and keeps each entry's better hit.

The prior is loaded on first use, and must be the one trained on the store's
encoder; a server without one answers 503 with the reason. One generation runs
at a time (each uses every core).
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dashboard.service import SearchCancelled, SwanService, UploadError
from encoder.prior import load_prior, sample
from ingest.errors import IngestError, MapTooLargeError
from ingest.mapio import GENERATED_LABEL, DensityMap
from swan_index import generate
from swan_index.commands.complete import DEFAULT_STRENGTH as COMPLETE_STRENGTH
from swan_index.generate import (
    DEFAULT_COMPLETION_PRIOR,
    DEFAULT_PRIOR,
    VARIATION_KEEP,
    VARIATION_STRENGTH,
    Generator,
    canonical_map,
    completion_of,
    consistent_on_input_grid,
    hub_centers,
    merge_completion,
    noisy_contour,
    on_input_grid,
    with_own_density,
)
from swan_index.query import Query, display_name, read_upload
from swan_index.superpose import mrc_bytes

#: Most maps one request may draw.
MAX_DRAWS = 8
#: Seconds a request waits for the prior to be free before a 503.
PRIOR_WAIT = 120.0
#: Denoised uploads kept in memory (for the dashboard's download of what it shows).
DENOISED_KEPT = 2


class PriorUnavailable(RuntimeError):
    """The server has no usable prior (the API answers 503 with this line)."""


@dataclass(frozen=True)
class GeneratedFile:
    """An MRC file made by the prior: its ``name`` and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Denoised:
    """A denoised upload.

    Attributes:
        file: the MRC file on the upload's grid, labelled generated.
        before: the upload's canonical volume ``[G, G, G]`` (primary pose).
        after: the denoised canonical volume ``[G, G, G]``, in the same frame.
    """

    file: GeneratedFile
    before: np.ndarray
    after: np.ndarray


@dataclass(frozen=True)
class Drawn:
    """Maps drawn by the prior.

    Attributes:
        volumes: ``[n, G, G, G]`` canonical volumes in [0, 1].
        files: one labelled MRC file per volume.
        description: what was drawn (for captions and labels).
    """

    volumes: np.ndarray
    files: list[GeneratedFile]
    description: str

    def archive(self, stem: str) -> tuple[str, bytes]:
        """``(file name, zip bytes)`` holding every file."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in self.files:
                zf.writestr(f.name, f.data)
        return f"{stem}.zip", buffer.getvalue()


_made_lock = threading.Lock()

#: Per prior task: what the server calls it, the option that names its file,
#: and the command that trains one.
_LOADS = {
    "scales": ("prior", "--prior", "swan train-prior"),
    "completion": (
        "completion prior",
        "--completion-prior",
        "swan train-prior --task completion",
    ),
}


def prior_service(service: SwanService) -> PriorService:
    """The one :class:`PriorService` of ``service`` (its ``prior_path``), made
    on first use and shared by the API and the dashboard."""
    with _made_lock:
        made = getattr(service, "_prior_service", None)
        if made is None:
            made = PriorService(service, service.prior_path)
            service._prior_service = made  # type: ignore[attr-defined]
        return made


class PriorService:
    """Denoising and generating with the latent prior over ``service``'s store.

    Args:
        service: the store's service (its encoder is the prior's).
        prior: the prior file (default: the shipped one).
    """

    def __init__(
        self,
        service: SwanService,
        prior: str | Path = DEFAULT_PRIOR,
        completion: str | Path = DEFAULT_COMPLETION_PRIOR,
    ):
        self.service = service
        self.path = Path(prior)
        self.completion_path = Path(completion)
        self._loaded: dict[str, Generator | str] = {}  # a prior, or why not
        self._load_lock = threading.Lock()
        self._turn = threading.BoundedSemaphore(1)
        self._denoised: OrderedDict[tuple, Denoised] = OrderedDict()

    # -- the prior -----------------------------------------------------------------
    def generator(self) -> Generator:
        """The loaded prior with the service's encoder (loaded once).

        Raises:
            PriorUnavailable: no prior file, or one of another encoder or task.
        """
        return self._load("scales")

    def completer(self) -> Generator:
        """The completion prior (``completion_path``) with the service's encoder
        (loaded once): what completes uploads and searches with completion.

        Raises:
            PriorUnavailable: no completion prior file, or one of another encoder
                or task.
        """
        return self._load("completion")

    def _load(self, task: str) -> Generator:
        """The prior of ``task`` (``scales``: ``path``; ``completion``:
        ``completion_path``), loaded once; a file that cannot serve is
        remembered as its one-line reason."""
        what, option, command = _LOADS[task]
        with self._load_lock:
            if task not in self._loaded:
                path = self.path if task == "scales" else self.completion_path
                model = self.service.encoder.model
                try:
                    prior, blob = load_prior(path, model)
                    if prior.config.task != task:
                        raise ValueError(
                            f"{path}: a {prior.config.task} prior, not a {what}"
                        )
                except (ValueError, OSError) as err:
                    self._loaded[task] = (
                        f"the server's {what} cannot be used ({err}); start it "
                        f"with {option} PRIOR, one trained on its encoder "
                        f"({command})"
                    )
                else:
                    self._loaded[task] = Generator(model, prior, blob["hash"])
            made = self._loaded[task]
        if isinstance(made, str):
            raise PriorUnavailable(made)
        return made

    def describe(self) -> dict[str, object]:
        """Whether the prior can be used, and which one."""
        try:
            gen = self.generator()
        except PriorUnavailable as err:
            return {"available": False, "reason": str(err)}
        try:
            completion = self.completer().prior_hash[:12]
        except PriorUnavailable:
            completion = None
        return {
            "available": True,
            "prior": gen.prior_hash[:12],
            "kind": gen.prior.config.kind,
            "encoder": gen.encoder.checkpoint_hash[:12],
            "completion_prior": completion,
        }

    @contextmanager
    def _run(self) -> Iterator[None]:
        """One generation at a time (a 503 after :data:`PRIOR_WAIT` s)."""
        if not self._turn.acquire(timeout=PRIOR_WAIT):
            raise UploadError(
                "the prior is busy with other requests; retry in a minute", status=503
            )
        try:
            yield
        finally:
            self._turn.release()

    # -- denoising and completing an upload --------------------------------------
    def denoise_upload(
        self,
        data: bytes,
        name: str = "upload",
        strength: float = 0.5,
        contour: float | None = None,
        seed: int = 0,
    ) -> Denoised:
        """An uploaded map denoised by the prior, on its own grid (MRC), and the
        canonical volumes before and after (the last few are kept: the same
        request again is answered from memory).

        Raises:
            UploadError: empty, too large (413), unreadable, or nothing at its
                contour; a bad ``strength``.
            PriorUnavailable: no usable prior.
        """
        return self._restore_upload(data, name, strength, contour, seed, "denoised")

    def complete_upload(
        self,
        data: bytes,
        name: str = "upload",
        strength: float = COMPLETE_STRENGTH,
        contour: float | None = None,
        seed: int = 0,
    ) -> Denoised:
        """``swan complete`` for an upload: :meth:`denoise_upload`'s path at the
        completion's default strength, the file named ``completed_...`` and
        labelled as a completion.

        Raises:
            UploadError: as :meth:`denoise_upload`.
            PriorUnavailable: no usable prior.
        """
        return self._restore_upload(data, name, strength, contour, seed, "completed")

    def _restore_upload(
        self,
        data: bytes,
        name: str,
        strength: float,
        contour: float | None,
        seed: int,
        made_as: str,
    ) -> Denoised:
        """The upload carried by the prior at ``strength``; ``made_as``
        (``"denoised"`` or ``"completed"``) names the file and its label."""
        if not 0 <= strength <= 1:
            raise UploadError(f"strength {strength:g}: use a value in [0, 1]")
        gen = self.generator() if made_as == "denoised" else self.completer()
        self.service._check_upload(data)
        shown = display_name(name)
        digest = hashlib.sha256(data).hexdigest()
        key = (digest, shown, strength, contour, seed, made_as)
        with self._load_lock:
            kept = self._denoised.get(key)
        if kept is not None:
            return kept
        try:
            dmap = read_upload(data, shown, max_bytes=self.service.max_map_bytes)
            if made_as == "denoised":
                contour = noisy_contour(dmap, contour)
            cv = gen.canonical(dmap, contour)
        except MapTooLargeError as exc:
            raise UploadError(str(exc), status=413) from None
        except IngestError as exc:
            raise UploadError(str(exc)) from None
        with self._run():
            volume = gen.reconstruct(cv, strength or None, seed=seed)[0]
        if gen.completes and strength:  # a completion keeps the upload's density
            volume = with_own_density(volume, cv.values)
        labels = [f"{made_as} upload {shown[:40]} strength {strength:g}", gen.tag]
        # a denoised map is kept consistent with the upload (as `swan denoise`);
        # a completion is not (the data would keep the missing parts empty)
        place = consistent_on_input_grid if made_as == "denoised" else on_input_grid
        try:
            blob = _labelled(place(volume, cv, dmap), dmap, labels)
        except MapTooLargeError as exc:  # no memory for the consistent map
            raise UploadError(str(exc), status=413) from None
        made = Denoised(
            GeneratedFile(f"{made_as}_{_stem(shown)}.mrc", blob),
            np.asarray(cv.values, np.float32),
            np.asarray(volume, np.float32),
        )
        with self._load_lock:
            self._denoised[key] = made
            while len(self._denoised) > DENOISED_KEPT:
                self._denoised.popitem(last=False)
        return made

    # -- completion ----------------------------------------------------------------
    def search_upload_query(
        self,
        data: bytes,
        name: str = "upload",
        k: int = 10,
        where: str | None = None,
        exact: bool = False,
        contour: float | None = None,
        fit: bool = True,
        strength: float = COMPLETE_STRENGTH,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[Query, dict[str, Any]]:
        """``swan search --complete`` for an upload: the service's search with the
        upload and with its completion, each entry's better hit kept
        (:func:`swan_index.generate.merge_completion`). Answers as
        :meth:`SwanService.search_upload_query`; the query's description has
        ``completion_strength``.

        Raises:
            UploadError, ValueError: as the service's search; a bad ``strength``.
            PriorUnavailable: no usable prior.
            SearchCancelled: ``cancelled`` answered true.
        """
        if not 0 < strength <= 1:
            raise UploadError(f"completion strength {strength:g}: use (0, 1]")
        svc = self.service
        gen = self.completer()
        query, options = svc.upload_query_for_search(
            data, name, k, where, exact, contour
        )
        if cancelled is not None and cancelled():
            raise SearchCancelled(query.name or "search")
        with self._run():
            completion = completion_of(query, gen, svc.encoder, strength)
        hits, sig = svc.search_hits(query, fit, k, options, cancelled)
        more, _ = svc.search_hits(completion, fit, k, options, cancelled)
        centers = None
        if generate.CENTER_WEIGHT:  # each entry's own background too
            fitted = fit and svc._fits.get(query) is not None  # as the searches
            with svc._lock.reading():
                centers = hub_centers(svc.store, [*hits, *more], options, fitted)
        hits, sig = merge_completion(hits, sig, more, query, k, centers=centers)
        return query, {
            "query": {**query.describe(), "completion_strength": strength},
            "hits": [h.to_dict() for h in hits],
            "significance": sig.to_dict(),
        }

    # -- drawing -------------------------------------------------------------------
    def variations(
        self,
        entry: str | int,
        n: int = 4,
        keep: int | None = None,
        seed: int = 0,
        strength: float = VARIATION_STRENGTH,
    ) -> Drawn:
        """``n`` maps keeping the first ``keep`` scales of the entry's stored code
        (None: ``VARIATION_KEEP``, or all but the finest scale of an encoder
        with fewer) and drawing the finer ones: afresh (``strength`` 1), or
        starting from the entry's own latent (its stored code's) carried by the
        prior for that share of the way (below 1: closer to the entry).

        Raises:
            KeyError: no such entry.
            UploadError: ``n`` or ``keep`` out of range.
            PriorUnavailable: no usable prior.
        """
        gen = self.generator()
        n_scales = len(gen.encoder.config.scales)
        _check_draws(n)
        if keep is None:
            keep = min(VARIATION_KEEP, n_scales - 1)
        if not 1 <= keep < n_scales:
            raise UploadError(f"keep_scales {keep}: use 1..{n_scales - 1}")
        if not 0 < strength <= 1:
            raise UploadError(f"strength {strength:g}: use a value in (0, 1]")
        row = self.service.entry(entry)
        code = self.service.code(row["id"])
        tokens = [torch.from_numpy(np.asarray(t, np.int64)) for t in code.tokens]
        kept = [t.expand(n, *t.shape[1:]) for t in tokens[:keep]]
        with self._run():
            start = None
            if strength < 1:  # the stored code's latent, all scales
                with torch.no_grad():
                    start = gen.encoder.cumulative_latents(tokens)[-1]
                start = start.expand(n, *start.shape[1:])
            tokens = sample(
                gen.prior,
                gen.encoder,
                n,
                keep=kept,
                start=start,
                strength=strength,
                generator=torch.Generator().manual_seed(seed),
            )
            with torch.no_grad():
                volumes = gen.encoder.decode_indices(tokens)[:, 0].clamp(0, 1).numpy()
        name = row.get("emdb_id") or f"entry {row['id']}"
        what = f"variation of {name} keeping {keep} of {n_scales} scales seed {seed}"
        if strength < 1:
            what += f" strength {strength:g}"
        return _drawn(volumes, "variation", what, gen)

    def draws(self, n: int = 4, seed: int = 0) -> Drawn:
        """``n`` maps drawn from the prior alone.

        Raises:
            UploadError: ``n`` out of range.
            PriorUnavailable: no usable prior.
        """
        gen = self.generator()
        _check_draws(n)
        with self._run():
            volumes = gen.sample(n, seed=seed)
        return _drawn(volumes, "generated", f"drawn from the prior seed {seed}", gen)


def _check_draws(n: int) -> None:
    if not 1 <= n <= MAX_DRAWS:
        raise UploadError(f"n {n}: draw 1 to {MAX_DRAWS} maps at once")


def _stem(name: str) -> str:
    """A file-name-safe stem of an upload's name, without map suffixes."""
    stem = name
    for suffix in (".gz", ".bz2", ".map", ".mrc", ".ccp4", ".bin"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)
    return safe[:60] or "upload"


def _labelled(data: np.ndarray, like: DensityMap, labels: list[str]) -> bytes:
    """MRC bytes of ``data`` on ``like``'s grid, labelled generated first."""
    return mrc_bytes(data, like, [GENERATED_LABEL, *labels])


def _drawn(volumes: np.ndarray, prefix: str, what: str, gen: Generator) -> Drawn:
    files = [
        GeneratedFile(
            f"{prefix}_{i:02d}.mrc",
            _labelled(v, canonical_map(v, None), [what[:80], gen.tag]),
        )
        for i, v in enumerate(volumes, start=1)
    ]
    return Drawn(np.asarray(volumes, np.float32), files, what)
