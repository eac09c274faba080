"""Connections: a reader's kept connection, and writers beside it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from swan_index import db as db_module
from swan_index.db import SharedReader, writer_holds
from swan_index.ranking import SearchOptions
from swan_index.store import DB_NAME, Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_writer_holds_reads_the_lock_table(tmp_path):
    lock = tmp_path / "write.lock"
    assert writer_holds(lock) is False  # no file: no writer
    lock.touch()
    assert writer_holds(lock) is False
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert writer_holds(lock) is True
        assert writer_holds(tmp_path / "other.lock") is False
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert writer_holds(lock) is False


def _reads(store: Store) -> SharedReader:
    return store._reads


def test_reader_keeps_one_connection_between_queries(store, monkeypatch):
    monkeypatch.setattr(db_module, "IDLE_CLOSE", 600.0)  # a slow machine's pauses
    store.close()
    reader = Store.open(store.path, read_only=True)
    try:
        reader.release_connections()
        before = _reads(reader).opened
        for _ in range(3):
            assert [r["id"] for r in reader.get([2, 1])] == [2, 1]
            assert reader.get_preview(1) is not None
        assert _reads(reader).opened == before + 1
        reader.release_connections()
        assert reader.get([3])[0]["id"] == 3
        assert _reads(reader).opened == before + 2
    finally:
        reader.close()


def test_writer_in_another_process_is_not_blocked_and_is_seen(store, samples):
    """A reader holding its connection lets a writer process in (it closes the
    connection when the writer takes the lock); after the commit, a refresh
    sees the writes, in metadata, previews and search hits."""
    prepared, code = samples
    path = store.path
    store.close()
    reader = Store.open(path, read_only=True)
    try:
        assert len(reader.get([1, 2])) == 2  # the connection is kept now
        script = (
            "import sys; from swan_index.store import Store\n"
            "with Store.open(sys.argv[1], timeout=60) as st:\n"
            "    print(st.delete([2]))\n"
        )
        env = {**os.environ, "PYTHONPATH": ROOT}
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1"
        assert reader.stale()
        reader.refresh()
        assert reader.count() == 5
        assert reader.get([2]) == []
        assert reader.get_preview(2) is None
        hits = reader.search(code[1:2], k=6)
        assert 2 not in [h.id for h in hits] and len(hits) == 5
        # a filter, through the same kept connection for the hits' metadata
        opts = SearchOptions(where="id >= 3")
        assert sorted(h.id for h in reader.search(code[1:2], 6, opts)) == [3, 4, 5, 6]
    finally:
        reader.close()


def test_writer_in_the_same_process_beside_a_kept_connection(store, samples):
    prepared, code = samples
    path = store.path
    store.close()
    reader = Store.open(path, read_only=True)
    try:
        assert len(reader.get([1])) == 1
        with Store.open(path, timeout=30) as writer:  # not refused meanwhile
            assert writer.delete([1, 3]) == 2
            added = writer.add(code[:1], [prepared[0].record])  # entry 1 again
        reader.refresh()
        assert reader.count() == 5
        assert reader.get([1]) == []
        assert reader.get([int(added[0])])[0]["id"] == int(added[0])
        assert reader.get([3]) == []
        assert (path / DB_NAME).exists()
    finally:
        reader.close()


def test_threads_share_the_kept_connection(store, monkeypatch):
    """Queries from many threads at once, each on its own cursor, all answered
    right; the connection is opened once."""
    monkeypatch.setattr(db_module, "IDLE_CLOSE", 600.0)
    store.close()
    reader = Store.open(store.path, read_only=True)
    try:
        reader.release_connections()
        before = _reads(reader).opened

        def work(i: int) -> bool:
            ids = [1 + (i + j) % 6 for j in range(3)]
            rows = reader.get(ids)
            return [r["id"] for r in rows] == ids and reader.get_preview(
                ids[0]
            ) is not None

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(200)))
        assert _reads(reader).opened == before + 1
    finally:
        reader.close()
