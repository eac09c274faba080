"""`swan ingest`'s reader processes end with it, however it is stopped.

A real `swan ingest` runs in a subprocess with two reader workers; once it has
committed a batch, it is killed (SIGKILL) or stopped (SIGTERM, to it alone or to
its whole process group; Ctrl-C), and every process it started (the workers and
multiprocessing's resource tracker) must be gone soon after. Running the same
command again then stores exactly the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ingest import random_rotation, read_map, rotate_map, write_map
from swan_index.cli import main
from swan_index.store import Store

from .conftest import MAPS, ROOT

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs Linux /proc"
)

N_MAPS = 24


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> Path:
    """Distinct maps: sample maps under random rotations (enough that the
    workers are still reading when the first batches are committed)."""
    d = tmp_path_factory.mktemp("workers") / "maps"
    d.mkdir()
    rng = np.random.default_rng(11)
    sources = ["emd_1832", "emd_6824", "emd_21457_seg", "emd_5625"]
    for i in range(N_MAPS):
        dmap = read_map(MAPS[sources[i % 4]])
        write_map(rotate_map(dmap, random_rotation(rng), order=1), d / f"w{i:02d}.mrc")
    return d


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> dict[int, str]:
    """``{pid: start time}`` of the live processes whose parent is ``pid``."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and int(fields[1]) == pid and fields[0] != "Z":
                out[int(name)] = fields[19]
    return out


def _alive(pid: int, start: str) -> bool:
    """The process ``pid`` that started at ``start`` still runs (not a zombie)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"


def _count(db: Path) -> int:
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return -1  # not there yet, or held by the writer
    try:
        return con.execute("SELECT count(*) FROM entries").fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("sig", "group"),
    [
        (signal.SIGKILL, False),
        (signal.SIGTERM, False),
        (signal.SIGTERM, True),  # as a service manager stops a whole unit
        (signal.SIGINT, True),  # Ctrl-C in a terminal
    ],
)
def test_workers_end_with_a_stopped_ingest(tmp_path, maps, sig, group, capsys):
    store_dir = tmp_path / "s"
    args = ["ingest", str(maps), "--store", str(store_dir)]
    args += ["--workers", "2", "--batch-size", "2", "--quiet"]
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:  # a file: an orphan holding a pipe would hang
        proc = subprocess.Popen(
            [sys.executable, "-m", "swan_index.cli", *args],
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while _count(store_dir / "swan.duckdb") < 2 or len(children) < 3:
            assert proc.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "ingest never committed a batch"
            children = _children(proc.pid)  # 2 workers + the resource tracker
            time.sleep(0.05)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(60)
        deadline = time.monotonic() + 60
        while left := [p for p, start in children.items() if _alive(p, start)]:
            assert time.monotonic() < deadline, f"processes {left} outlived ingest"
            time.sleep(0.1)
    finally:
        for pid, start in children.items():  # never leave them behind
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err_path.read_text()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # a clean stop: one line, and the exit status of the signal
        assert proc.returncode == 128 + sig
        (line,) = err.strip().splitlines()
        assert sig.name in line and "run the same command again" in line
    assert "Traceback" not in err

    with Store.open(store_dir, read_only=True) as store:
        n = store.count()
    assert 2 <= n < N_MAPS, "the stop came too late to test anything"
    assert main([*args, "--json"]) == 0  # the same command, again
    rest = json.loads(capsys.readouterr().out)
    assert (rest["ok"], rest["skipped"], rest["failed"]) == (N_MAPS - n, n, 0)
    with Store.open(store_dir, read_only=True) as store:
        assert store.count() == N_MAPS
