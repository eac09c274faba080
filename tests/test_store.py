"""The Store: add / search / get / delete, reopen, filters, consistency, locking,
lost commits and damaged files."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from encoder.code import MultiScaleCode
from swan_index.db import StoreBusyError, StoreDamagedError, StoreLossError
from swan_index.map_encoder import concat_codes
from swan_index.ranking import SearchOptions
from swan_index.schema import EncoderInfo, EntryRecord, decode_preview, encode_preview
from swan_index.store import Store


def _seeded(encoder, n: int, seed: int = 0, spread: float = 0.35):
    """Seeded clustered vectors in the shape of the encoder's codes (for index
    tests): 50 cluster centres; an entry is a noisy copy of one, with its noise
    shared across scales (as in real codes, where the finer scales refine the
    coarse shape) plus a little noise of each scale's own."""
    rng = np.random.default_rng(seed)
    info = encoder.info
    centre_of = rng.integers(0, 50, n)
    shared = rng.normal(size=(n, 32))
    vectors, tokens = [], []
    for side, depth, dim in zip(info.scales, info.depths, info.dims, strict=True):
        mix = np.random.default_rng(side).normal(size=(32, dim)) / np.sqrt(32)
        centres = np.random.default_rng(100 + side).normal(size=(50, dim))
        v = centres[centre_of] + spread * (shared @ mix)
        v += 0.1 * spread * rng.normal(size=(n, dim))
        vectors.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype("f4"))
        tokens.append(rng.integers(0, 512, (n, depth, side, side, side), np.int16))
    code = MultiScaleCode(info.scales, tuple(tokens), tuple(vectors), info.hash)
    records = [
        EntryRecord(
            sha256=f"seeded-{seed}-{i}",
            resolution=float(2 + i % 10),
            method="singleParticle" if i % 3 else "helical",
            rg=float(30 + 5 * (i % 7)),
        )
        for i in range(n)
    ]
    return code, records


def test_add_get_count_search_delete(store, samples):
    prepared, code = samples
    assert store.count() == 6
    rows = store.get([1, 2, 999])
    assert [r["id"] for r in rows] == [1, 2]
    assert rows[0]["sha256"] == prepared[0].record.sha256
    assert rows[0]["encoder_hash"] == store.encoder.hash
    for i in range(6):  # every stored map finds itself first, by code and by id
        hits = store.search(code[i], k=3)
        assert hits[0].id == i + 1 and hits[0].score == pytest.approx(1, abs=1e-5)
        assert store.search(i + 1, k=1)[0].id == i + 1
        assert set(hits[0].scores) == {"1", "2", "4", "8"}
    assert store.get([1])[0]["emdb_id"] == "EMD-1832"
    assert store.find("EMD-1832") == store.find("emd_1832") == store.find("1") == 1
    with pytest.raises(KeyError):
        store.find("EMD-999999")
    assert store.delete([2, 2, 999]) == 1
    assert store.count() == 5 and store.get([2]) == []
    assert 2 not in [
        h.id for h in store.search(code[1], k=10, options=SearchOptions(exact=True))
    ]
    assert 2 not in [h.id for h in store.search(code[1], k=10)]
    with pytest.raises(KeyError):
        store.search(2)


def test_hits_carry_metadata_and_ranked_scores(store, samples):
    _, code = samples
    hits = store.search(code[3], k=6)
    assert [h.rank for h in hits] == list(range(1, 7))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    d = hits[0].to_dict()
    for key in ("rank", "id", "emdb_id", "score", "scores", "title", "resolution"):
        assert key in d
    # exact search scores everything and agrees on this small store
    exact = store.search(code[3], k=6, options=SearchOptions(exact=True))
    assert [h.id for h in exact] == [h.id for h in hits]


def test_reopen_answers_the_same(tmp_path, store, samples):
    _, code = samples
    before = [(h.id, round(h.score, 6)) for h in store.search(code[0], k=6)]
    store.close()
    with Store.open(tmp_path / "s", read_only=True) as reader:
        after = [(h.id, round(h.score, 6)) for h in reader.search(code[0], k=6)]
        assert reader.count() == 6
    assert before == after
    with Store.open(tmp_path / "s") as writer:
        assert [
            (h.id, round(h.score, 6)) for h in writer.search(code[0], k=6)
        ] == before


def test_previews_and_codes_round_trip(store, samples, encoder):
    prepared, code = samples
    preview = store.get_preview(1)
    assert preview.shape == (32, 32, 32)
    np.testing.assert_allclose(preview, prepared[0].preview(), atol=1 / 255 + 1e-6)
    stored = store.get_code(1)
    for a, b in zip(stored.tokens, code[0].tokens, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(stored.vectors, code[0].vectors, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    recon = encoder.model.decode(stored)
    assert recon.shape == (1, 1, 64, 64, 64)
    volume = np.random.default_rng(0).random((8, 8, 8)).astype("f4")
    np.testing.assert_allclose(
        decode_preview(encode_preview(volume), 8), volume, atol=0.5 / 255 + 1e-6
    )


def test_previews_for_the_fit_are_kept_until_the_entries_change(store, samples):
    prepared, code = samples
    reads = []
    read = store._read_previews
    store._read_previews = lambda ids: reads.append(list(ids)) or read(ids)
    first = store.get_previews([1, 2, 3])
    assert sorted(first) == [1, 2, 3] and reads == [[1, 2, 3]]
    assert not first[1].flags.writeable  # shared between searches
    again = store.get_previews([3, 2, 4])
    assert reads == [[1, 2, 3], [4]]  # only the one not read yet
    assert again[2] is first[2]
    store.delete([2])  # the entries changed: everything is read again
    after = store.get_previews([1, 2, 3])
    assert reads[-1] == [1, 2, 3] and sorted(after) == [1, 3]
    store.add(code[1:2], [prepared[1].record], [np.zeros((32, 32, 32), "f4")])
    new_id = int(store.ids[-1])
    assert not store.get_previews([new_id])[new_id].any()


def test_hit_metadata_is_read_once_per_change_of_the_entries(store, samples):
    prepared, code = samples
    with Store.open(store.path, read_only=True) as reader:
        loads = []
        load = reader._hit_columns._load
        reader._hit_columns._load = lambda c: loads.append(1) or load(c)
        first = reader.search(code[0], k=6)  # the first asks the database
        assert first[0].entry["emdb_id"] == "EMD-1832" and not loads
        again = reader.search(code[0], k=6)  # the second reads the columns
        assert len(loads) == 1 and again == first
        by_sql = {r["id"]: r for r in reader.get([h.id for h in first])}
        for hit in first:  # the same values as the database gives
            row = by_sql[hit.id]
            assert hit.entry == {k: row[k] for k in hit.entry}
        reader.search(code[2], k=3)
        assert len(loads) == 1  # nothing changed: not read again
        store.delete([1])
        extra, records = _seeded_like(code[:1], prepared[:1])
        records = [replace(r, title="added after the first search") for r in records]
        new_id = int(store.add(extra, records)[0])
        reader.refresh()
        reader.search(code[0], k=6)
        hits = reader.search(code[0], k=6)
        assert len(loads) == 2 and 1 not in [h.id for h in hits]
        titles = {h.id: h.entry["title"] for h in hits}
        assert titles[new_id] == "added after the first search"


def test_boundary_checks(store, samples, encoder):
    prepared, code = samples
    records = [p.record for p in prepared]
    other = MultiScaleCode(code.scales, code.tokens, code.vectors, "0" * 64)
    with pytest.raises(ValueError, match="encoder"):
        store.add(other, records)
    with pytest.raises(ValueError, match="encode"):
        store.search(other)
    with pytest.raises(ValueError, match="already stored"):
        store.add(code, records)  # same sha256s
    assert store.count() == 6  # the failed transaction left nothing behind
    bad = list(code.vectors)
    bad[1] = bad[1] * 2
    with pytest.raises(ValueError, match="normalised"):
        store.add(
            MultiScaleCode(code.scales, code.tokens, tuple(bad), code.checkpoint_hash),
            records,
        )
    short = list(code.vectors)
    short[2] = short[2][:, :10]
    with pytest.raises(ValueError, match="expected"):
        store.add(
            MultiScaleCode(
                code.scales, code.tokens, tuple(short), code.checkpoint_hash
            ),
            records,
        )
    with pytest.raises(ValueError, match="records"):
        store.add(code, records[:2])
    with pytest.raises(ValueError, match="k="):
        store.search(code[0], k=0)
    with pytest.raises(ValueError, match="scales"):
        store.search(code[0], options=SearchOptions(scales=(3,)))
    with pytest.raises(ValueError, match="other|encoder|holds"):
        Store.open(
            store.path, encoder=replace(encoder.info, hash="f" * 64), read_only=True
        )


def test_where_filters(store, samples):
    _, code = samples
    coarse = store.get(list(range(1, 7)))
    big = sorted(r["id"] for r in coarse if r["voxel_size"] > 2)
    assert 0 < len(big) < 6
    hits = store.search(code[0], k=10, options=SearchOptions(where="voxel_size > 2"))
    assert sorted(h.id for h in hits) == big
    assert store.count("voxel_size > 2") == len(big)
    assert (
        store.search(code[0], k=3, options=SearchOptions(where="emdb_id = 'EMD-0'"))
        == []
    )
    hits = store.search(
        code[0], k=1, options=SearchOptions(where="voxel_size > 2 AND rg > 0")
    )
    assert len(hits) == 1 and hits[0].id in big


@pytest.mark.parametrize(
    "where",
    [
        "resolutoin < 4",  # typo: the error names the columns
        "1=1); DROP TABLE entries; SELECT (1",
        "id IN (SELECT 1 FROM read_csv('/etc/passwd'))",
        "id > 0; DELETE FROM entries",
    ],
)
def test_where_is_checked_and_read_only(store, where):
    with pytest.raises(ValueError, match="^where "):
        store.search(1, options=SearchOptions(where=where))
    assert store.count() == 6 and len(store.get([1, 2, 3, 4, 5, 6])) == 6


def test_approximate_agrees_with_exact_on_seeded_data(tmp_path, encoder):
    code, records = _seeded(encoder, 3000)
    queries, _ = _seeded(encoder, 40, seed=1)
    flat_store = Store.open(tmp_path / "flat", encoder=encoder.info)
    flat_store.add(code, records)
    with Store.open(
        tmp_path / "ivf", encoder=encoder.info, approx_threshold=1000
    ) as st:
        st.add(code, records)
        st.flush()
        assert [i["kind"] for i in st.index_info()] == ["flat"] * 4
        assert st.joint_info()["ntotal"] == 3000  # the first stage above 1000
        recalls = []
        for q in range(len(queries)):
            approx = [h.id for h in st.search(queries[q], k=10)]
            exact = [
                h.id
                for h in st.search(queries[q], k=10, options=SearchOptions(exact=True))
            ]
            recalls.append(len(set(approx) & set(exact)) / 10)
            # scanning every list of the joint index: the same as a small store
            full = [
                h.id
                for h in st.search(
                    queries[q], k=10, options=SearchOptions(nprobe=10**6)
                )
            ]
            flat = [h.id for h in flat_store.search(queries[q], k=10)]
            assert full == flat
        assert np.mean(recalls) >= 0.95
        # a filter that leaves few entries still gives k hits with the IVF index
        # (the scan widens from one list)
        where = "method = 'helical' AND resolution = 3"
        n = st.count(where)
        assert 10 <= n < 200
        hits = st.search(
            queries[0],
            k=10,
            options=SearchOptions(where=where, exact_filter_limit=0, nprobe=1),
        )
        assert len(hits) == 10
        rows = st.get([h.id for h in hits])
        assert all(r["method"] == "helical" and r["resolution"] == 3 for r in rows)
        top = [h.id for h in st.search(queries[0], k=10)]
    with Store.open(tmp_path / "ivf", read_only=True) as reader:  # reloads
        assert reader.joint_info()["ntotal"] == 3000
        assert [h.id for h in reader.search(queries[0], k=10)] == top
    flat_store.close()


def test_query_poses_keep_each_entrys_best(store, samples):
    _, code = samples
    two = concat_codes([code[4], code[1]])  # "poses" of one query
    hits = store.search(two, k=6, options=SearchOptions(exact=True))
    best = {h.id: h for h in hits}
    assert best[5].pose == 0 and best[2].pose == 1
    assert best[5].scores["1"] == pytest.approx(1, abs=1e-5)


def test_size_term(store, samples):
    _, code = samples
    rg = store.get([3])[0]["rg"]
    hits = store.search(code[2], k=6, rg=rg)
    assert hits[0].id == 3 and hits[0].scores["size"] == pytest.approx(0)
    far = store.search(code[2], k=6, rg=rg * 10, options=SearchOptions(size_weight=0.5))
    same = next(h for h in far if h.id == 3)  # 10x the size is penalised
    assert same.score == pytest.approx(1 - 0.5 * np.log(10), abs=1e-4)
    assert same.scores["size"] == pytest.approx(np.log(10))
    plain = store.search(code[2], k=6, rg=rg * 10, options=SearchOptions(size_weight=0))
    assert plain[0].id == 3 and plain[0].score == pytest.approx(1, abs=1e-5)


def test_indexes_repaired_from_the_database(tmp_path, store, samples):
    prepared, code = samples
    path = store.path
    store.close()
    old = tmp_path / "old"
    shutil.copytree(path / "faiss", old)
    # (1) index files that lack new entries and hold deleted ones
    with Store.open(path) as st:
        extra, records = _seeded_like(code, prepared)
        new_ids = st.add(extra, records)
        st.delete([1])
    shutil.rmtree(path / "faiss")
    shutil.copytree(old, path / "faiss")  # as if the crash came before the flush
    with Store.open(path, read_only=True) as reader:
        assert reader.count() == 11
        assert all(i["ntotal"] == 11 for i in reader.index_info())
        assert reader.search(int(new_ids[0]), k=1)[0].id == new_ids[0]
        assert 1 not in [
            h.id
            for h in reader.search(code[0], k=11, options=SearchOptions(exact=True))
        ]
    # (2) a damaged index file and a missing one are rebuilt
    (path / "faiss" / "scale_2.vectors").write_bytes(b"garbage" * 10)
    (path / "faiss" / "scale_8.vectors").unlink()
    (path / "faiss" / "scale_4.vectorsq8x1.tmp").write_bytes(b"half")
    with Store.open(path) as st:
        assert all(i["ntotal"] == 11 for i in st.index_info())
        hits = st.search(int(new_ids[1]), k=2)  # itself and its twin (same code)
        assert new_ids[1] in [h.id for h in hits] and hits[1].score > 0.9999
    assert (path / "faiss" / "scale_8.vectors").exists()
    assert not list((path / "faiss").glob("*.tmp*"))


def _seeded_like(code, prepared):
    """Six more entries: the sample codes with new sha256s."""
    records = [
        EntryRecord(sha256=p.record.sha256 + "-copy", rg=p.record.rg) for p in prepared
    ]
    return code, records


def test_one_writer_many_readers(store, samples):
    prepared, code = samples
    with pytest.raises(StoreBusyError, match="another process"):
        Store.open(store.path)
    with Store.open(store.path, read_only=True) as reader:
        assert reader.count() == 6
        extra, records = _seeded_like(code, prepared)
        store.add(extra, records)
        assert reader.count() == 6  # a reader sees its snapshot ...
        reader.refresh()
        assert reader.count() == 12  # ... until it refreshes
        assert 12 in [h.id for h in reader.search(12, k=2)]
        with pytest.raises(PermissionError):
            reader.delete([1])


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no store"):
        Store.open(tmp_path / "none", read_only=True)
    with pytest.raises(FileNotFoundError, match="swan ingest"):
        Store.open(tmp_path / "none")
    plain = tmp_path / "plain"
    plain.write_text("not a store")
    for kwargs in ({"read_only": True}, {"encoder": TINY}):
        with pytest.raises(ValueError, match="a file, not a store folder"):
            Store.open(plain, **kwargs)
    assert plain.read_text() == "not a store"


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "other"])
def test_damaged_database_is_one_line(tmp_path, damage):
    path = tiny_store(tmp_path / "s", [3, 3])
    db = path / "swan.duckdb"
    if damage == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    elif damage == "empty":
        db.write_bytes(b"")
    elif damage == "garbage":
        db.write_bytes(np.random.default_rng(0).bytes(300_000))
    else:  # a DuckDB database, but not a store's
        db.unlink()
        duckdb.connect(str(db)).close()
    before = db.read_bytes()
    for kwargs in ({"read_only": True}, {}, {"encoder": TINY}):
        with pytest.raises(StoreDamagedError) as err:
            Store.open(path, **kwargs)
        text = str(err.value)
        assert "\n" not in text and str(db) in text and "backup" in text
    assert db.read_bytes() == before  # nothing was written over it
    (path / "swan.duckdb").unlink()  # and without it, no new one is made
    with pytest.raises(StoreDamagedError, match="missing"):
        Store.open(path, encoder=TINY)


# -- lost commits ------------------------------------------------------------------
#: A tiny encoder identity: stores of it need no checkpoint.
TINY = EncoderInfo("t" * 64, (1, 2), (1, 1), (4, 4), 16)


def tiny_batch(start: int, n: int) -> tuple[MultiScaleCode, list[EntryRecord]]:
    """``n`` entries of the tiny encoder with sha256s ``tiny-start..``."""
    rng = np.random.default_rng(start)
    vectors = []
    for dim in TINY.dims:
        v = rng.normal(size=(n, dim))
        vectors.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype("f4"))
    tokens = [np.zeros((n, 1, s, s, s), np.int16) for s in TINY.scales]
    code = MultiScaleCode(TINY.scales, tuple(tokens), tuple(vectors), TINY.hash)
    records = [EntryRecord(sha256=f"tiny-{start + i}", rg=20.0) for i in range(n)]
    return code, records


def tiny_store(path: Path, batches: list[int]) -> Path:
    """A closed store of the tiny encoder, one transaction per batch size."""
    start = 0
    with Store.open(path, encoder=TINY) as st:
        for n in batches:
            st.add(*tiny_batch(start, n))
            start += n
    return path


def crash_copy(path: Path, dest: Path, batches: list[int], start: int = 100) -> None:
    """Commit ``batches`` more to the store at ``path`` while the database stays
    open (so they sit in its write-ahead log, not yet checkpointed), and copy the
    folder to ``dest`` as a crash at that moment would leave it."""
    st = Store.open(path)
    # a second handle on the database: the store's own connections close after
    # each commit without checkpointing while it is open
    keep = duckdb.connect(str(path / "swan.duckdb"))
    try:
        for n in batches:
            st.add(*tiny_batch(start, n))
            start += n
        assert (path / "swan.duckdb.wal").stat().st_size > 0
        shutil.copytree(path, dest)
    finally:
        keep.close()
        st.close()


def truncate_wal(path: Path, keep: float = 1 / 3) -> None:
    wal = path / "swan.duckdb.wal"
    os.truncate(wal, int(wal.stat().st_size * keep))


def test_lost_wal_refuses_writes_and_never_reuses_ids(tmp_path, caplog):
    path = tiny_store(tmp_path / "s", [4])
    crashed = tmp_path / "crashed"
    crash_copy(path, crashed, [4, 4])
    with Store.open(path, read_only=True) as whole:
        assert whole.count() == 12
    truncate_wal(crashed)
    wal = (crashed / "swan.duckdb.wal").read_bytes()
    with pytest.raises(StoreLossError) as err:
        Store.open(crashed)
    text = str(err.value)
    assert "\n" not in text
    assert "8 entries, ids 5-12" in text and "--accept-loss" in text
    assert "backup" in text and str(crashed) in text
    with pytest.raises(StoreLossError):
        Store.open(crashed, encoder=TINY)
    # nothing changed: the damaged log is still there for whoever decides
    assert (crashed / "swan.duckdb.wal").read_bytes() == wal
    with caplog.at_level(logging.WARNING):
        with Store.open(crashed, read_only=True) as reader:  # readers still open
            assert reader.count() == 4
    assert "ids 5-12" in caplog.text and "read-only" in caplog.text
    with Store.open(crashed, accept_loss=True) as st:
        assert st.count() == 4
        new = st.add(*tiny_batch(500, 2))
    assert new.tolist() == [13, 14]  # past every id handed out before the loss
    with Store.open(crashed) as st:  # the decision is recorded: writes go on
        assert st.count() == 6
        assert st.add(*tiny_batch(600, 1)).tolist() == [15]
    con = duckdb.connect(str(crashed / "swan.duckdb"), read_only=True)
    meta = dict(con.execute("SELECT key, value FROM store_meta").fetchall())
    con.close()
    accepted = json.loads(meta["accepted_losses"])
    assert [a["ids"] for a in accepted] == [[5, 12]]


def test_lost_deletes_are_detected(tmp_path):
    """A lost write that handed out no ids (a delete) is a loss too."""
    path = tiny_store(tmp_path / "s", [4])
    st = Store.open(path)
    keep = duckdb.connect(str(path / "swan.duckdb"))
    st.delete([2])
    shutil.copytree(path, tmp_path / "crashed")
    keep.close()
    st.close()
    (tmp_path / "crashed" / "swan.duckdb.wal").unlink()
    with pytest.raises(
        StoreLossError, match="at write 1, manifest.json recorded write 2"
    ):
        Store.open(tmp_path / "crashed")


def test_faiss_files_are_a_mark_too(tmp_path):
    """Without the manifest, ids the FAISS files hold still show the loss."""
    path = tiny_store(tmp_path / "s", [4])
    crashed = tmp_path / "crashed"
    crash_copy(path, crashed, [4])
    with Store.open(path) as st:  # FAISS files that hold the lost ids
        st.flush()
    shutil.copytree(path / "faiss", crashed / "faiss", dirs_exist_ok=True)
    (crashed / "swan.duckdb.wal").unlink()
    (crashed / "manifest.json").unlink()
    with pytest.raises(StoreLossError, match="ids 5-8.*faiss/"):
        Store.open(crashed)


def test_a_mark_behind_the_database_is_no_loss(tmp_path, caplog):
    """A crash between a commit and its mark leaves the mark behind: fine."""
    path = tiny_store(tmp_path / "s", [4])
    old = (path / "manifest.json").read_text()
    with Store.open(path) as st:
        st.add(*tiny_batch(50, 3))
    (path / "manifest.json").write_text(old)
    with Store.open(path) as st:
        assert st.count() == 7
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["next_id"], manifest["count"]) == (8, 7)
    # a missing or damaged manifest: a warning, and the writer rewrites it
    for damage in ("", "{not json"):
        if damage:
            (path / "manifest.json").write_text(damage)
        else:
            (path / "manifest.json").unlink()
        with caplog.at_level(logging.WARNING):
            with Store.open(path) as st:
                assert st.count() == 7
        assert "manifest.json" in caplog.text
        assert json.loads((path / "manifest.json").read_text())["next_id"] == 8
        caplog.clear()


def test_a_mark_is_written_after_every_commit(tmp_path):
    path = tmp_path / "s"
    with Store.open(path, encoder=TINY) as st:
        for b in range(3):
            st.add(*tiny_batch(10 * b, 2))
            manifest = json.loads((path / "manifest.json").read_text())
            assert manifest["next_id"] == 2 * b + 3 and manifest["count"] == 2 * b + 2
        st.delete([1])
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["count"] == 5 and manifest["generation"] == 4


def test_a_deleted_database_is_not_made_again(tmp_path):
    path = tiny_store(tmp_path / "s", [3])
    (path / "swan.duckdb").unlink()
    with pytest.raises(StoreDamagedError, match="missing, but manifest.json records"):
        Store.open(path, encoder=TINY)
    assert not (path / "swan.duckdb").exists()


def test_scale_index_lookup_sorted_and_not():
    from swan_index.vectors import ScaleIndex

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(6, 8)).astype("f4")
    for ids in ([1, 2, 3, 7, 8, 9], [5, 3, 9, 1, 2, 4]):  # ascending, then not
        index = ScaleIndex(8)
        index.add(np.array(ids), vecs)
        want = np.array([ids[4], ids[0], ids[4]])
        np.testing.assert_array_equal(index.lookup(want), vecs[[4, 0, 4]])
        index.remove(np.array([ids[1]]))
        np.testing.assert_array_equal(index.lookup(np.array([ids[5]])), vecs[[5]])
        with pytest.raises((KeyError, RuntimeError)):
            index.lookup(np.array([ids[1]]))


def test_scale_index_file_is_mapped_and_exact(tmp_path):
    """A written scale reads back memory-mapped, gives the same vectors, searches
    exactly (every row scored) and is copied into memory by a change."""
    from swan_index.vectors import ScaleIndex

    rng = np.random.default_rng(0)
    ids = np.array([3, 1, 7, 9, 4, 12])
    vecs = rng.normal(size=(6, 8)).astype("f4")
    index = ScaleIndex(8)
    index.add(ids, vecs)
    index.write(tmp_path / "s.vectors")
    got = ScaleIndex.read(tmp_path / "s.vectors", 8)
    assert got.mapped and got.ntotal == 6
    np.testing.assert_array_equal(got.ids(), ids)
    np.testing.assert_array_equal(got.lookup(np.array([9, 3])), vecs[[3, 0]])
    q = rng.normal(size=(2, 8)).astype("f4")
    scores, found = got.search(q, 4)
    order = np.argsort(-(q @ vecs.T), axis=1)[:, :4]
    np.testing.assert_array_equal(found, ids[order])
    _, few = got.search(q, 4, allowed=np.array([1, 9, 99]))
    assert set(few[0]) == {1, 9, -1}
    assert got.remove(np.array([7, 99])) == 1 and not got.mapped
    got.add(np.array([20]), vecs[:1])
    np.testing.assert_array_equal(got.lookup(np.array([20, 12])), vecs[[0, 5]])
    with pytest.raises(ValueError, match="float32"):
        ScaleIndex.read(tmp_path / "s.vectors", 4)
    (tmp_path / "bad.vectors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a vectors file"):
        ScaleIndex.read(tmp_path / "bad.vectors", 8)


def test_weights_follow_the_given_scales(store, samples):
    _, code = samples
    hits = store.search(
        code[0],
        k=6,
        options=SearchOptions(scales=(8, 1), weights=(1.0, 0.0), size_weight=0),
    )
    for h in hits:
        assert h.score == pytest.approx(h.scores["8"], abs=1e-6)
    with pytest.raises(ValueError, match="once"):
        store.search(code[0], options=SearchOptions(scales=(1, 1)))


def test_entries_and_count_take_one_expression_and_hide_stored_values(store):
    where = "rg > 0 AND id IN (SELECT id FROM entries WHERE id < 4)"
    assert store.entries(("id", "rg"), where=where)["id"].tolist() == [1, 2, 3]
    assert store.count(where) == 3
    for escape in ("1=1) UNION SELECT 1 --", ") OR (1=1", "1=1 /* c */"):
        with pytest.raises(ValueError, match="^where "):
            store.entries(("id",), where=escape)
        with pytest.raises(ValueError, match="^where "):
            store.count(escape)
    path = store.get([1])[0]["source_path"]
    with pytest.raises(ValueError, match=r"on a stored value \(not shown\)") as err:
        store.entries(("id",), where="CAST(source_path AS INTEGER) = 1")
    assert path not in str(err.value) and path.rsplit("/", 1)[-1] not in str(err.value)


def test_stale_tells_a_reader_of_a_writers_commits(store):
    reader = Store.open(store.path, read_only=True)
    try:
        assert not reader.stale()
        store.delete([6])
        assert reader.stale() and reader.count() == 6
        reader.refresh()
        assert not reader.stale() and reader.count() == 5
    finally:
        reader.close()
