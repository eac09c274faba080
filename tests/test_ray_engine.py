"""The Ray ingest engine (`swan ingest --engine ray`) on a two-node local cluster.

The cluster tests start a real Ray cluster of two nodes on this machine
(``ray.cluster_utils.Cluster``: one CPU, 150 MiB of object store and 600 MiB of
task memory each), so they are marked slow (``SWAN_SLOW_TESTS=1``; CI sets it).
They check that the engine gives the same entries as the local one, that a map too
large for every node fails with one line while the rest is stored, that a reader
process killed mid-run is retried with every map stored once, and that a writer
killed mid-run leaves whole entries that the same command completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from mrcfile.dtypes import HEADER_DTYPE

from ingest import random_rotation, read_map, rotate_map, write_map
from swan_index.cli import main
from swan_index.indexer import ingest_paths
from swan_index.store import Store

from .conftest import DATA, MAPS, MODELS, ROOT
from .test_indexer import _count

#: Marks tests that start a two-node Ray cluster (about ten seconds, once).
slow = pytest.mark.skipif(
    not os.environ.get("SWAN_SLOW_TESTS"),
    reason="starts a two-node Ray cluster; set SWAN_SLOW_TESTS=1",
)

#: Task memory of each test node: room for a model's task (the largest ask).
NODE_MEMORY = 600 * 2**20


def test_ray_engine_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    code = main(
        ["ingest", str(MAPS["emd_1832"]), "--store", str(tmp_path / "s")]
        + ["--engine", "ray", "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "pip install -e '.[cluster]'" in err
    assert not (tmp_path / "s").exists()  # refused before the store was made


def test_an_unknown_engine_is_refused(tmp_path, encoder):
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        with pytest.raises(ValueError, match="engine 'spark': use one of local, ray"):
            ingest_paths([MAPS["emd_1832"]], store, encoder, engine="spark")
        assert store.count() == 0


def test_address_needs_the_ray_engine(tmp_path, capsys):
    code = main(
        ["ingest", str(MAPS["emd_1832"]), "--store", str(tmp_path / "s")]
        + ["--address", "auto", "--quiet"]
    )
    assert code == 2
    assert "--address needs --engine ray" in capsys.readouterr().err


def test_an_address_nothing_answers_on_fails_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    code = main(
        ["ingest", str(MAPS["emd_1832"]), "--store", str(tmp_path / "s")]
        + ["--engine", "ray", "--address", "127.0.0.1:1", "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: no Ray cluster answers at 127.0.0.1:1")
    assert len(err.splitlines()) == 1


def test_read_tasks_import_no_torch():
    pytest.importorskip("ray")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, swan_index.ray_engine; print('torch' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_task_memory_follows_the_header(tmp_path):
    pytest.importorskip("ray")
    from ingest.canonical import MEMORY_FACTOR
    from ingest.discover import MapEntry, ModelEntry
    from swan_index.ray_engine import MODEL_MEMORY, TASK_BASE_MEMORY, task_memory

    small = task_memory(MapEntry(MAPS["emd_1832"], None, None))  # 64^3 float32
    assert small == (1 + MEMORY_FACTOR) * 4 * 64**3 + TASK_BASE_MEMORY
    big = _announced_map(tmp_path / "big.mrc", 400)
    assert task_memory(MapEntry(big, None, None)) == (
        (1 + MEMORY_FACTOR) * 4 * 400**3 + TASK_BASE_MEMORY
    )
    assert task_memory(ModelEntry(MODELS["6272"])) == MODEL_MEMORY
    junk = tmp_path / "junk.map"
    junk.write_bytes(b"not a map")
    assert task_memory(MapEntry(junk, None, None)) is None


def _announced_map(path: Path, n: int) -> Path:
    """A valid float32 map of ``n^3`` zero voxels, written as a sparse file (its
    bytes are never all on disk)."""
    small = read_map(MAPS["emd_3197"])
    write_map(small, path, compress=False)
    with open(path, "r+b") as f:
        header = np.frombuffer(f.read(HEADER_DTYPE.itemsize), HEADER_DTYPE).copy()
        for key in ("nx", "ny", "nz", "mx", "my", "mz"):
            header[key] = n
        header["cella"] = [(float(n),) * 3]
        f.seek(0)
        f.write(header.tobytes())
        f.truncate(HEADER_DTYPE.itemsize + int(header["nsymbt"][0]) + 4 * n**3)
    return path


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on this machine, connected; shut down afterwards."""
    if not os.environ.get("SWAN_SLOW_TESTS"):
        pytest.skip("starts a two-node Ray cluster; set SWAN_SLOW_TESTS=1")
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    node = {
        "num_cpus": 1,
        "object_store_memory": 150 * 2**20,
        "memory": NODE_MEMORY,
    }
    c = Cluster(
        initialize_head=True, head_node_args={**node, "include_dashboard": False}
    )
    try:
        c.add_node(**node)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """12 distinct maps: the sample maps under random rotations."""
    d = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(11)
    sources = ["emd_1832", "emd_6824", "emd_21457_seg", "emd_5625"]
    for i in range(12):
        dmap = read_map(MAPS[sources[i % 4]])
        write_map(rotate_map(dmap, random_rotation(rng), order=1), d / f"r{i:02d}.mrc")
    return d


def _entries(store: Store) -> dict[str, np.ndarray]:
    """``sha256 -> every scale's vector, joined``."""
    table = store.entries(("id", "sha256"))
    out = {}
    for i, sha in zip(table["id"], table["sha256"], strict=True):
        code = store.get_code(int(i))
        out[str(sha)] = np.concatenate([v.reshape(-1) for v in code.vectors])
    return out


#: Entry columns both engines must fill alike.
COLUMNS = ("sha256", "emdb_id", "title", "method", "resolution", "contour", "box")
COLUMNS += ("rg", "mol_volume", "simulated", "source_path", "file_size")


def _metadata(store: Store) -> dict[str, tuple[str, ...]]:
    """``sha256 -> the entry's columns``, as text (floats rounded)."""
    table = store.entries(COLUMNS)
    rows = zip(*(table[c] for c in COLUMNS), strict=True)
    text = [
        tuple(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row)
        for row in rows
    ]
    return {row[0]: row for row in text}


def _tables(store_dir: Path) -> list[int]:
    con = duckdb.connect(str(store_dir / "swan.duckdb"), read_only=True)
    try:
        return [
            con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("entries", "codes", "previews")
        ]
    finally:
        con.close()


@slow
def test_ray_and_local_engines_store_the_same_entries(tmp_path, cluster, encoder):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("emd_1832", "emd_21457_seg", "emd_3001", "emd_6824"):
        shutil.copy(MAPS[name], folder / MAPS[name].name)
    shutil.copy(DATA / "maps" / "emd-21457.xml", folder / "emd-21457.xml")
    shutil.copy(MODELS["6272"], folder / "6272.pdb")
    (folder / "truncated.mrc").write_bytes(MAPS["emd_5625"].read_bytes()[:3000])
    got = {}
    for engine in ("local", "ray"):
        with Store.open(tmp_path / engine, encoder=encoder.info) as store:
            run = ingest_paths(
                [folder], store, encoder, workers=1, progress=False, engine=engine
            )
            assert (run.ok, run.failed) == (5, 1)  # 4 maps, 1 model at 6 Å
            assert "truncated" in run.failures[0]["reason"]
            got[engine] = (_entries(store), _metadata(store))
            again = ingest_paths(
                [folder], store, encoder, engine=engine, progress=False
            )
            assert (again.ok, again.skipped) == (0, 5)
    local, ray_ = got["local"][0], got["ray"][0]
    assert set(local) == set(ray_) and len(local) == 5
    for sha, vector in local.items():
        np.testing.assert_allclose(ray_[sha], vector, atol=1e-5)
    assert got["local"][1] == got["ray"][1]


@slow
def test_a_map_too_large_for_every_node_fails_one_line(tmp_path, cluster, encoder):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(MAPS["emd_1832"], folder / "emd_1832.map")
    # 400^3 float32: reading and canonicalizing it needs over 700 MiB
    _announced_map(folder / "huge.mrc", 400)
    with Store.open(tmp_path / "s", encoder=encoder.info) as store:
        run = ingest_paths([folder], store, encoder, progress=False, engine="ray")
        assert (run.ok, run.failed) == (1, 1) and store.count() == 1
    reason = run.failures[0]["reason"]
    assert reason.startswith(str(folder / "huge.mrc") + ": ")
    assert "more than any node of the Ray cluster has" in reason
    assert "\n" not in reason


def _kill_first_reader(seen: list[int], stop: threading.Event) -> None:
    """Kill (SIGKILL) the first Ray worker process found running a read task."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::_read"):
                os.kill(int(pid), signal.SIGKILL)
                seen.append(int(pid))
                return
        time.sleep(0.005)


@slow
def test_a_killed_reader_is_retried_and_every_map_stored_once(
    tmp_path, cluster, encoder, many
):
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_reader, args=(killed, stop))
    killer.start()
    try:
        with Store.open(tmp_path / "s", encoder=encoder.info) as store:
            run = ingest_paths(
                [many], store, encoder, batch_size=4, progress=False, engine="ray"
            )
            shas = list(store.entries(("sha256",))["sha256"])
    finally:
        stop.set()
        killer.join()
    assert killed, "no reader was running to be killed"
    assert (run.ok, run.failed, run.skipped) == (12, 0, 0)
    assert len(shas) == len(set(shas)) == 12
    assert _tables(tmp_path / "s") == [12, 12, 12]


@slow
def test_a_killed_writer_leaves_whole_entries_and_resumes(
    tmp_path, cluster, encoder, many
):
    store_dir = tmp_path / "s"
    cmd = [sys.executable, "-m", "swan_index.cli", "ingest", str(many)]
    cmd += ["--store", str(store_dir), "--batch-size", "2", "--quiet"]
    cmd += ["--engine", "ray", "--address", cluster.address]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while _count(store_dir / "swan.duckdb") < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "ingest never committed a batch"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    n = _count(store_dir / "swan.duckdb")
    assert 2 <= n < 12, "the kill came too late to test anything"
    assert _tables(store_dir) == [n, n, n]  # no half entry
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{12 - n} stored, {n} skipped, 0 failed" in done.stdout
    with Store.open(store_dir, read_only=True) as store:
        shas = list(store.entries(("sha256",))["sha256"])
        assert all(i["ntotal"] == 12 for i in store.index_info())
    assert len(shas) == len(set(shas)) == 12
    assert _tables(store_dir) == [12, 12, 12]
