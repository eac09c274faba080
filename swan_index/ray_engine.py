"""The Ray ingest engine (``swan ingest --engine ray``): a cluster reads and encodes.

Each file is read and canonicalized by a Ray task
(:func:`~swan_index.prepare.prepare_one`, the local engine's worker function),
which asks Ray for the memory the map's header announces (:func:`task_memory`), so
that a node never runs more maps at once than its memory holds; at most ``window``
files are in flight, and each result goes to the writer as soon as it is done
(nothing gathers the results first). A file too large for every node fails with
one line and the run goes on. Maps are encoded as they come back, :data:`GROUP`
at a time, by Ray actors holding the checkpoint (one per GPU when the cluster has
GPUs, else one per :data:`CPUS_PER_ENCODER` CPUs, at least one, on one torch
thread), and the codes stream back to the one writer
(:func:`swan_index.indexer.ingest_paths`), which commits its batches as the local
engine's.

Faults: a task whose worker process dies (killed, out of memory, a node lost) is
run again by Ray, up to :data:`READ_RETRIES` times, and then fails its file with
one line; an encoding actor that dies is restarted and its batch encoded again.
The writer stores a content once whatever runs twice. If the writer itself dies,
Ray ends the run's tasks and actors; the store holds whole batches only, and the
same command ingests the rest.

Read tasks import what the local engine's workers import (ingest, numpy,
:mod:`swan_index.prepare`), never torch; only the encoding actors load it. Every
node needs the project installed (``pip install -e '.[cluster]'``), and the files
and the checkpoint under the same paths (a shared file system).

This is the only module that imports ``ray``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray.exceptions import RayError

from ingest.canonical import MEMORY_FACTOR
from ingest.discover import ModelEntry
from ingest.errors import IngestError
from ingest.mapio import map_size
from ingest.models import MAX_SIDE
from swan_index.indexer import EngineError
from swan_index.prepare import Entry, PreparedMap, prepare_one

if TYPE_CHECKING:
    from encoder.code import MultiScaleCode
    from swan_index.map_encoder import MapEncoder

log = logging.getLogger(__name__)

#: Memory a read task asks for on top of its map's (the canonical volumes, the
#: slabs canonicalization works in, the result on its way out).
TASK_BASE_MEMORY = 64 * 2**20
#: Memory a read task of an atomic model asks for: its simulated map has at most
#: :data:`~ingest.models.MAX_SIDE` voxels a side, canonicalized as a map.
MODEL_MEMORY = (1 + MEMORY_FACTOR) * 4 * MAX_SIDE**3 + TASK_BASE_MEMORY
#: How many more times Ray runs a read task whose worker process died.
READ_RETRIES = 3
#: How many times Ray restarts an encoding actor that died (and retries its batch).
ENCODER_RESTARTS = 3
#: Without GPUs: one encoding actor per this many cluster CPUs (at least one):
#: on one CPU thread a batch encodes at about 0.1-0.2 s a map, reading and
#: canonicalizing a ~300^3 map takes about 1 s of a CPU
#: (``benchmarks/bench_ingest_ray.py``).
CPUS_PER_ENCODER = 8
#: Groups in flight per encoding actor before the writer waits for one.
BATCHES_PER_ENCODER = 2
#: Maps encoded together as they come back from the read tasks (on one CPU
#: thread a group of one costs about three times the CPU per map of a group of
#: two; ``benchmarks/bench_ingest.py``).
GROUP = 2


def task_memory(entry: Entry) -> int | None:
    """Bytes of memory reading and canonicalizing ``entry`` takes at most, from
    its header alone (:func:`ingest.mapio.map_size`): the reading, plus
    :data:`~ingest.canonical.MEMORY_FACTOR` times the map as float32, plus
    :data:`TASK_BASE_MEMORY`; :data:`MODEL_MEMORY` for an atomic model.

    Returns:
        The bytes, or ``None`` when the header cannot be read (the task then
        fails at once, with the reader's one line).
    """
    if isinstance(entry, ModelEntry):
        return MODEL_MEMORY
    try:
        size = map_size(entry.map_path)
    except IngestError:
        return None
    return size.read_bytes + MEMORY_FACTOR * size.float32_bytes + TASK_BASE_MEMORY


@ray.remote(max_retries=READ_RETRIES)
def _read(entry: Entry, grid: int) -> list[PreparedMap] | str:
    """Ray task: :func:`~swan_index.prepare.prepare_one`."""
    return prepare_one(entry, grid)


@ray.remote(max_restarts=ENCODER_RESTARTS, max_task_retries=ENCODER_RESTARTS)
class _Encoder:
    """Ray actor: the checkpoint, on a GPU when it was given one."""

    def __init__(self, checkpoint: str, device: str) -> None:
        import torch  # torch: actors only

        from swan_index.map_encoder import MapEncoder

        if device == "cpu":
            # it holds no CPU of its own (num_cpus=0): torch's default of one
            # thread per core would fight the read tasks for every core
            torch.set_num_threads(1)
        self.encoder = MapEncoder(checkpoint, device)

    def encode(self, volumes: np.ndarray) -> MultiScaleCode:
        return self.encoder.encode(volumes)


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Refuse at once a ``HOST:PORT`` that nothing answers on (Ray itself would
    keep trying to connect for minutes).

    Raises:
        EngineError: one line naming the address and the fix.
    """
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(
            f"--address {address!r}: use HOST:PORT (as `ray start --head` prints) "
            "or auto"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise EngineError(
            f"no Ray cluster answers at {address} ({err.strerror or err}); start "
            "one there with `ray start --head`, or check the address"
        ) from None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


class RayEngine:
    """Prepares maps as Ray tasks and encodes them in Ray actors.

    Args:
        encoder: the checkpoint (its file is loaded by the actors: it must be
            at the same path on every node, as the maps).
        address: the cluster to join (``auto``: the one ``ray start`` started on
            this machine); ``None``: a Ray instance on this machine for this run
            only. A process already connected to Ray (``ray.init``) uses that.
        window: most files in flight (default: twice the cluster's CPUs).
    """

    def __init__(
        self,
        encoder: MapEncoder,
        address: str | None = None,
        window: int | None = None,
    ) -> None:
        self._started = False
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                if address is None:
                    ray.init(
                        address="local",
                        include_dashboard=False,
                        logging_level=logging.ERROR,
                        log_to_driver=False,
                    )
                else:
                    ray.init(
                        address=address,
                        logging_level=logging.ERROR,
                        log_to_driver=False,
                    )
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = "on this machine" if address is None else f"at {address}"
                raise EngineError(
                    f"cannot start or join a Ray cluster {where} "
                    f"({' '.join(str(err).split())[:300]}); start one with "
                    "`ray start --head` and pass its address with --address"
                ) from None
            self._started = True
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 0))
        gpus = int(resources.get("GPU", 0))
        self.window = window if window and window > 0 else max(2, 2 * cpus)
        #: the largest memory a task may ask for: the largest node's
        self.node_memory = max(
            (n["Resources"].get("memory", 0) for n in ray.nodes() if n["Alive"]),
            default=0,
        )
        model = str(encoder.checkpoint)
        if gpus:
            self._actors = [
                _Encoder.options(num_gpus=1, num_cpus=1).remote(model, "cuda")
                for _ in range(gpus)
            ]
        else:  # it holds no CPU while idle, as the local engine's writer
            self._actors = [
                _Encoder.options(num_cpus=0).remote(model, "cpu")
                for _ in range(max(1, cpus // CPUS_PER_ENCODER))
            ]
        # maps come back one by one; they are encoded in small groups as they
        # come (GROUP at a time), not when the writer's batch is full, so that
        # encoding overlaps reading; the writer's batches take their codes
        self._waiting: list[PreparedMap] = []  # arrived, not yet sent
        self._groups: dict[Any, list[PreparedMap]] = {}  # being encoded
        self._codes: dict[PreparedMap, MultiScaleCode] = {}
        self._batches: list[list[PreparedMap]] = []
        self._turn = 0
        log.info(
            "ray engine: %d CPUs, %d GPUs, %d encoders, window %d",
            cpus,
            gpus,
            len(self._actors),
            self.window,
        )

    def prepared(
        self, entries: list[Entry], grid: int
    ) -> Generator[tuple[Entry, list[PreparedMap] | str], None, None]:
        """Each entry's prepared maps (or why it failed), in completion order,
        with at most ``window`` files in flight. Closing it cancels those."""
        todo = iter(entries)
        flying: dict[Any, Entry] = {}
        try:
            while True:
                for entry in todo:
                    need = task_memory(entry) or TASK_BASE_MEMORY
                    if need > self.node_memory:
                        yield entry, self._too_large(entry, need)
                        continue
                    flying[_read.options(memory=need).remote(entry, grid)] = entry
                    if len(flying) >= self.window:
                        break
                if not flying:
                    return
                done, _ = ray.wait(list(flying), num_returns=1)
                for ref in done:
                    entry = flying.pop(ref)
                    result = self._result(ref, entry)
                    if not isinstance(result, str):
                        self._arrived(result)
                    yield entry, result
        finally:
            for ref in flying:
                ray.cancel(ref)

    def _too_large(self, entry: Entry, need: int) -> str:
        return (
            f"{entry.path}: reading and canonicalizing it needs about {_gib(need)} "
            f"of memory, more than any node of the Ray cluster has "
            f"({_gib(self.node_memory)} at most); add a node with more memory, or "
            "bin the map to fewer voxels first"
        )

    def _result(self, ref: Any, entry: Entry) -> list[PreparedMap] | str:
        try:
            return ray.get(ref)
        except RayError as err:  # its worker died READ_RETRIES + 1 times
            return (
                f"{entry.path}: its Ray worker failed {READ_RETRIES + 1} times "
                f"({type(err).__name__}: {' '.join(str(err).split())[:200]}); "
                "ingest it alone on a node with more memory, or read the node's logs"
            )

    def _arrived(self, maps: list[PreparedMap]) -> None:
        """Maps read: sent to an actor once :data:`GROUP` are waiting."""
        self._waiting.extend(maps)
        if len(self._waiting) >= GROUP:
            self._send()
        self._collect(block=False)

    def _send(self) -> None:
        """Start encoding the waiting maps on the next actor."""
        if not self._waiting:
            return
        group, self._waiting = self._waiting, []
        volumes = np.concatenate([p.volumes for p in group])
        actor = self._actors[self._turn % len(self._actors)]
        self._turn += 1
        self._groups[actor.encode.remote(volumes)] = group

    def _collect(self, block: bool) -> None:
        """Take the codes of the groups encoded (``block``: wait for one)."""
        if not self._groups:
            return
        refs = list(self._groups)
        if block:
            done, _ = ray.wait(refs, num_returns=1)
        else:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            group = self._groups.pop(ref)
            code = ray.get(ref)  # an actor that died too often raises here
            rows = 0
            for prepared in group:
                n = len(prepared.volumes)
                self._codes[prepared] = code[rows : rows + n]
                rows += n

    def submit(self, batch: list[PreparedMap]) -> None:
        """Queue a batch for committing (its maps are encoded as they came)."""
        for prepared in batch:
            if prepared not in self._codes and not any(
                any(prepared is q for q in g)
                for g in (self._waiting, *self._groups.values())
            ):
                self._waiting.append(prepared)  # not read through ``prepared``
        self._batches.append(batch)

    def encoded(
        self, wait: bool = False
    ) -> Iterator[tuple[list[PreparedMap], MultiScaleCode]]:
        """The batches submitted whose maps are encoded, in order, with their
        codes (``wait``: every batch, sending the maps still waiting; else
        those done, waiting while more than :data:`BATCHES_PER_ENCODER` groups
        per actor are in flight)."""
        if wait:
            self._send()
        limit = BATCHES_PER_ENCODER * len(self._actors)
        while self._batches:
            batch = self._batches[0]
            if not all(p in self._codes for p in batch):
                if wait or len(self._groups) > limit:
                    if not self._groups:
                        self._send()  # a map left waiting alone
                    if not self._groups:  # never sent: waiting would never end
                        raise RuntimeError(
                            "ray engine: a batch holds maps that were never sent "
                            "for encoding"
                        )
                    self._collect(block=True)
                    continue
                self._collect(block=False)
                if not all(p in self._codes for p in batch):
                    return
            from swan_index.map_encoder import concat_codes  # torch: the writer's

            self._batches.pop(0)
            yield batch, concat_codes([self._codes.pop(p) for p in batch])

    def close(self) -> None:
        """End the actors (and the Ray instance this engine started)."""
        self._groups.clear()
        self._waiting.clear()
        self._codes.clear()
        self._batches.clear()
        for actor in self._actors:
            ray.kill(actor)
        if self._started:
            ray.shutdown()
