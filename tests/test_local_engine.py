"""The local ingest engine: maps are encoded as they come back from the workers,
in batches of what came meanwhile, and each map gets its own code."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from encoder.code import MultiScaleCode
from ingest import find_entries
from swan_index.local_engine import MIN_ENCODE_BATCH, LocalEngine

from .conftest import DATA


class _Recorder:
    """An encoder whose code of a volume is its sum (to check which code goes
    with which map), recording the batches it was given."""

    grid = 64

    def __init__(self, fail: bool = False, gate: threading.Event | None = None):
        self.batches: list[int] = []
        self.fail = fail
        self.gate = gate

    def encode(self, volumes: np.ndarray) -> MultiScaleCode:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise ValueError("no model")
        self.batches.append(len(volumes))
        sums = volumes.reshape(len(volumes), -1).sum(axis=1, keepdims=True)
        tokens = np.zeros((len(volumes), 1, 1, 1, 1), dtype=np.int16)
        return MultiScaleCode((1,), (tokens,), (sums.astype(np.float32),), "test")


@pytest.fixture(scope="module")
def entries():
    return list(find_entries(DATA / "maps"))


def _run(engine: LocalEngine, entries, batch_size: int = 4):  # noqa: ANN001, ANN202
    """Commit as the indexer does; ``(prepared, code)`` of every map."""
    out, batch = [], []
    for _, results in engine.prepared(entries, 64):
        batch += results
        if len(batch) >= batch_size:
            engine.submit(batch)
            batch = []
        out += list(engine.encoded())
    if batch:
        engine.submit(batch)
    out += list(engine.encoded(wait=True))
    engine.close()
    return [(p, code[i]) for done, code in out for i, p in enumerate(done)]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_map_gets_its_own_code(entries, workers):
    recorder = _Recorder()
    got = _run(LocalEngine(recorder, workers), entries)
    assert len(got) == len(entries)
    for prepared, code in got:
        assert code.vectors[0][0, 0] == pytest.approx(float(prepared.volumes.sum()))
    assert sum(recorder.batches) == len(entries)


def test_maps_that_came_meanwhile_are_encoded_in_one_batch(entries):
    gate = threading.Event()  # holds the first encoding until all maps came
    recorder = _Recorder(gate=gate)
    engine = LocalEngine(recorder, 0)
    prepared = [p for _, results in engine.prepared(entries, 64) for p in results]
    gate.set()
    engine.submit(prepared)
    (done, code), *rest = list(engine.encoded(wait=True))
    engine.close()
    assert not rest and done == prepared and len(code) == len(entries)
    # the first two (or more), taken before the others came, then the others
    first, others = recorder.batches
    assert first >= MIN_ENCODE_BATCH and first + others == len(entries)


def test_a_map_alone_waits_for_another_or_for_the_writer(entries):
    recorder = _Recorder()
    engine = LocalEngine(recorder, 0)
    (first,) = next(iter(engine.prepared(entries[:1], 64)))[1]
    engine.submit([first])
    assert list(engine.encoded()) == []  # not encoded alone while more may come
    assert recorder.batches == []
    ((done, code),) = list(engine.encoded(wait=True))  # the writer waits: now
    engine.close()
    assert done == [first] and recorder.batches == [1]
    assert code.vectors[0][0, 0] == pytest.approx(float(first.volumes.sum()))


def test_an_encoding_error_reaches_the_writer(entries):
    engine = LocalEngine(_Recorder(fail=True), 0)
    with pytest.raises(RuntimeError, match="encoding failed: ValueError: no model"):
        # raised by whichever call comes after the thread failed
        for _, results in engine.prepared(entries[:3], 64):
            engine.submit(results)
        list(engine.encoded(wait=True))
    engine.close()


def test_torch_threads_are_given_back(entries, encoder):
    before = torch.get_num_threads()
    got = _run(LocalEngine(encoder, 1), entries[:2])
    assert torch.get_num_threads() == before
    volumes = np.concatenate([p.volumes for p, _ in got])
    expected = encoder.encode(volumes)
    for i, (_, code) in enumerate(got):
        for s in range(len(expected.scales)):
            assert np.array_equal(code.tokens[s][0], expected.tokens[s][i])
            np.testing.assert_allclose(
                code.vectors[s][0], expected.vectors[s][i], atol=1e-5
            )
