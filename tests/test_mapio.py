"""read_map / write_map: real EMDB maps, axis orders, modes, compression, bad input."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import shutil
import struct
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from ingest import DensityMap, MapFormatError, map_size, read_map, write_map


@pytest.mark.parametrize("label", ["emd_1832", "emd_5625", "emd_21457_seg", "emd_6824"])
def test_real_maps_match_mrcfile(map_path, label):
    path = map_path(label)
    dmap = read_map(path)
    with mrcfile.open(path, permissive=True) as mrc:
        assert np.array_equal(dmap.data, mrc.data)
        assert dmap.voxel_size == pytest.approx(
            tuple(float(v) for v in mrc.voxel_size.tolist()), rel=1e-6
        )
    assert dmap.data.dtype == np.float32
    assert dmap.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_emd_3001_axis_order_is_reordered_to_zyx(map_path):
    # EMD-3001 stores columns=z, rows=x, sections=y (MAPC/MAPR/MAPS = 3, 1, 2).
    dmap = read_map(map_path("emd_3001"))
    with mrcfile.open(map_path("emd_3001"), permissive=True) as mrc:
        raw = np.array(mrc.data)  # [section=y, row=x, column=z]
        assert (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps)) == (
            3,
            1,
            2,
        )
    assert raw.shape == (25, 43, 73)
    assert dmap.shape == (73, 25, 43)  # z, y, x
    assert np.array_equal(dmap.data, raw.transpose(2, 0, 1))
    # anisotropic voxels, from CELLA / (MX, MY, MZ)
    assert dmap.voxel_size == pytest.approx((0.44825, 0.3925, 0.45875), abs=1e-5)
    # NSTART = (0, -21, -12) for (columns=z, rows=x, sections=y)
    assert dmap.origin == pytest.approx((-21 * 0.44825, -12 * 0.3925, 0.0), abs=1e-4)
    assert any("nversion=0" in w for w in dmap.warnings)


def test_nstart_origin_and_emdb_warnings_are_collected_not_printed(
    map_path, capsys, recwarn
):
    dmap = read_map(map_path("emd_1832"))
    assert dmap.origin == pytest.approx((-32 * 5.7,) * 3, abs=1e-3)
    assert "nversion=0 (pre-MRC2014 header)" in dmap.warnings
    assert capsys.readouterr() == ("", "")
    assert len(recwarn) == 0


def test_origin_field_wins_over_nstart(map_path):
    dmap = read_map(map_path("emd_21457_seg"))
    assert dmap.origin == pytest.approx((162.75, 231.0, 204.75), abs=1e-3)


def _sample(shape=(12, 10, 8), voxel=(1.5, 2.0, 2.5)) -> DensityMap:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return DensityMap(
        data=data, voxel_size=voxel, origin=(10.0, -5.0, 3.0), path="x", sha256=""
    )


@pytest.mark.parametrize("name", ["a.mrc", "a.map.gz"])
def test_write_read_round_trip(tmp_path, name):
    src = _sample()
    out = write_map(src, tmp_path / name)
    back = read_map(out)
    assert np.array_equal(back.data, src.data)
    assert back.voxel_size == pytest.approx(src.voxel_size)
    assert back.origin == pytest.approx(src.origin)


def test_bz2_and_gzip_compression_detected_by_content(tmp_path, map_path):
    plain = map_path("emd_5625").read_bytes()
    (tmp_path / "m.map.bz2").write_bytes(bz2.compress(plain))
    (tmp_path / "m.ccp4").write_bytes(gzip.compress(plain))  # gzip without .gz
    ref = read_map(map_path("emd_5625")).data
    assert np.array_equal(read_map(tmp_path / "m.map.bz2").data, ref)
    assert np.array_equal(read_map(tmp_path / "m.ccp4").data, ref)


@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress])
def test_content_hash_is_of_every_byte_of_the_file(tmp_path, map_path, compress):
    # hashed as it is read: bytes after the data block (a second gzip member,
    # trailing garbage in a plain file) count too
    plain = map_path("emd_5625").read_bytes()
    blob = compress(plain) + compress(b"tail") if compress else plain + b"tail"
    path = tmp_path / "m.map"
    path.write_bytes(blob)
    dmap = read_map(path)
    assert dmap.sha256 == hashlib.sha256(blob).hexdigest()
    assert np.array_equal(dmap.data, read_map(map_path("emd_5625")).data)


@pytest.mark.parametrize("label", ["emd_1832", "emd_3001", "emd_3197"])
def test_map_size_reads_the_size_reading_takes_from_the_header(
    tmp_path, map_path, label
):
    path = map_path(label)
    size = map_size(path)
    data = read_map(path).data
    assert size.float32_bytes == data.nbytes
    # emd_3001's axes are stored out of order: reading makes a float32 copy
    assert size.copies == (label == "emd_3001")
    assert size.read_bytes == data.nbytes * (2 if size.copies else 1)


def test_map_size_of_bz2_short_and_missing_files(tmp_path, map_path):
    plain = map_path("emd_5625").read_bytes()
    (tmp_path / "m.map.bz2").write_bytes(bz2.compress(plain))
    assert map_size(tmp_path / "m.map.bz2").shape == (56, 56, 56)
    short = tmp_path / "short.map"
    short.write_bytes(plain[:500])
    with pytest.raises(MapFormatError, match="short.map: truncated"):
        map_size(short)
    with pytest.raises(MapFormatError, match="no such file"):
        map_size(tmp_path / "missing.map")


@pytest.mark.parametrize(
    "dtype,mode",
    [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)],
)
def test_modes(tmp_path, dtype, mode):
    data = (np.arange(6 * 5 * 4).reshape(6, 5, 4) % 100).astype(dtype)
    with mrcfile.new(tmp_path / "m.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 2.0
    dmap = read_map(tmp_path / "m.mrc")
    assert dmap.mode == mode
    assert dmap.data.dtype == np.float32
    assert np.array_equal(dmap.data, data.astype(np.float32))


def test_big_endian_map(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    with mrcfile.new(tmp_path / "be.mrc") as mrc:
        mrc.set_data(data.astype(">f4"))
    assert np.array_equal(read_map(tmp_path / "be.mrc").data, data)


# --- bad input -------------------------------------------------------------------


def _patch_header(path, offset, fmt, *values):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack(fmt, *values))


def _small_map(path, shape=(6, 6, 6), value=1.0):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.full(shape, value, dtype=np.float32))
    return path


def _make_bad(kind, tmp_path, map_path):
    p = tmp_path / f"{kind}.mrc"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "short_header":
        p.write_bytes(map_path("emd_5625").read_bytes()[:500])
    elif kind == "truncated":
        p.write_bytes(map_path("emd_5625").read_bytes()[:300_000])
    elif kind == "truncated_gz":
        p = tmp_path / "truncated.map.gz"
        p.write_bytes(map_path("emd_3001").read_bytes()[:50_000])
    elif kind == "random":
        p.write_bytes(np.random.default_rng(3).bytes(5000))
    elif kind == "image_2d":
        _small_map(p, shape=(1, 16, 16))
    elif kind == "image_stack":
        with mrcfile.new(p) as mrc:
            mrc.set_data(np.zeros((5, 16, 16), np.float32))
            mrc.set_image_stack()
    elif kind == "volume_stack":
        with mrcfile.new(p) as mrc:
            mrc.set_data(np.zeros((2, 4, 8, 8), np.float32))
    elif kind == "nan":  # mrcfile warns while writing; the reader must refuse
        data = np.ones((6, 6, 6), np.float32)
        data[2, 3, 4] = np.nan
        with mrcfile.new(p) as mrc:
            mrc.set_data(data)
    elif kind == "inf":
        data = np.ones((6, 6, 6), np.float32)
        data[0, 0, 0] = np.inf
        with mrcfile.new(p) as mrc:
            mrc.set_data(data)
    elif kind == "absurd_dims":
        _small_map(p)
        _patch_header(p, 0, "<3i", 100_000, 100_000, 100_000)
    elif kind == "negative_dims":
        _small_map(p)
        _patch_header(p, 0, "<3i", -5, 6, 6)
    elif kind == "unknown_mode":
        _small_map(p)
        _patch_header(p, 12, "<i", 101)
    elif kind == "complex_mode":
        _small_map(p)
        _patch_header(p, 12, "<i", 4)
    elif kind == "bad_axis_order":
        _small_map(p)
        _patch_header(p, 64, "<3i", 1, 1, 3)
    elif kind == "huge_extended_header":
        _small_map(p)
        _patch_header(p, 92, "<i", 2_000_000_000)
    elif kind == "directory":
        p = tmp_path / "folder.map"
        p.mkdir()
    return p


BAD = {
    "empty": "empty",
    "short_header": "1024-byte MRC header",
    "truncated": "truncated",
    "truncated_gz": "download it again",
    "random": "not an MRC/CCP4 map",
    "image_2d": "2D image",
    "image_stack": "stack of 5 2D images",
    "volume_stack": "stack of volumes",
    "nan": "NaN/Inf",
    "inf": "NaN/Inf",
    "absurd_dims": "over the limit",
    "negative_dims": "non-positive dimensions",
    "unknown_mode": "unsupported MRC mode 101",
    "complex_mode": "unsupported MRC mode 4",
    "bad_axis_order": "not a permutation",
    "huge_extended_header": "extended header",
    "directory": "no such file",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_gives_one_clear_line(kind, tmp_path, map_path):
    path = _make_bad(kind, tmp_path, map_path)
    with pytest.raises(MapFormatError) as info:
        read_map(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": ")
    assert BAD[kind] in message
    assert ";" in message  # a fix is suggested


def test_absurd_dims_fail_before_allocating(tmp_path, map_path):
    path = _make_bad("absurd_dims", tmp_path, map_path)
    with pytest.raises(MapFormatError, match="1,000,000,000,000,000"):
        read_map(path, max_voxels=2048**3)


def test_gzip_copy_of_real_map_reads_same(tmp_path, map_path):
    dst = tmp_path / "emd_1832.map.gz"
    with open(map_path("emd_1832"), "rb") as src, gzip.open(dst, "wb") as out:
        shutil.copyfileobj(src, out)
    assert np.array_equal(read_map(dst).data, read_map(map_path("emd_1832")).data)


def test_plain_file_shorter_than_announced_fails_before_allocating(tmp_path):
    # Header claims 1000^3 float32 (4 GB); the file is 1 kB of data: refused from the
    # file size alone, without allocating the array.
    path = _small_map(tmp_path / "liar.mrc")
    _patch_header(path, 0, "<3i", 1000, 1000, 1000)
    with pytest.raises(MapFormatError, match="header announces 1000x1000x1000"):
        read_map(path)


# --- unreadable files, memory limits -------------------------------------------


def _refuse_open(monkeypatch, path, error):
    """Make opening ``path`` raise ``error`` (as an unreadable file would)."""
    import builtins

    real_open = builtins.open

    def fake_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if str(file) == str(path):
            raise error
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


def test_permission_denied_is_not_reported_as_corrupt(tmp_path, monkeypatch):
    import errno

    path = _small_map(tmp_path / "locked.mrc")
    _refuse_open(monkeypatch, path, PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(MapFormatError) as info:
        read_map(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot be read: permission denied;")
    assert "permissions" in message and "download" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_says_permission_denied(tmp_path):
    path = _small_map(tmp_path / "locked.mrc")
    path.chmod(0)
    try:
        with pytest.raises(MapFormatError, match="permission denied"):
            read_map(path)
    finally:
        path.chmod(0o644)


def test_io_error_is_not_reported_as_corrupt(tmp_path, monkeypatch):
    import errno

    path = _small_map(tmp_path / "flaky.mrc")
    _refuse_open(monkeypatch, path, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(MapFormatError) as info:
        read_map(path)
    assert "Input/output error; check the disk" in str(info.value)
    assert "download" not in str(info.value)


def test_max_bytes_refuses_before_allocating(tmp_path):
    from ingest.errors import MapTooLargeError

    path = _small_map(tmp_path / "m.mrc", shape=(40, 40, 40))  # 250 KiB float32
    assert read_map(path, max_bytes=256_000).shape == (40, 40, 40)
    with pytest.raises(MapTooLargeError) as info:
        read_map(path, max_bytes=200_000)
    message = str(info.value)
    assert "40x40x40 voxels (250 KiB as float32), over the limit of 195 KiB" in message
    assert "\n" not in message and "bin or crop" in message


def test_map_over_the_memory_available_is_refused(tmp_path, monkeypatch):
    import ingest.mapio
    from ingest.errors import MapTooLargeError

    path = _small_map(tmp_path / "m.mrc", shape=(40, 40, 40))
    monkeypatch.setattr(ingest.mapio, "available_memory", lambda: 100_000)
    with pytest.raises(MapTooLargeError, match="only 97.7 KiB of memory is available"):
        read_map(path)


def test_gzip_too_small_for_its_header_fails_before_allocating(tmp_path):
    import tracemalloc

    path = tmp_path / "liar.map.gz"
    raw = _small_map(tmp_path / "m.mrc").read_bytes()
    path.write_bytes(gzip.compress(raw))
    _patch_header(tmp_path / "m.mrc", 0, "<3i", 1000, 1000, 1000)  # 4 GB announced
    path.write_bytes(gzip.compress((tmp_path / "m.mrc").read_bytes()))
    tracemalloc.start()
    try:
        with pytest.raises(MapFormatError, match="more than a gzip file of"):
            read_map(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_gzip_map_is_read_into_one_array(tmp_path):
    # decompressed in chunks straight into the array: no second copy of the map
    import tracemalloc

    data = np.random.default_rng(0).normal(size=(256, 128, 128)).astype(np.float32)
    src = DensityMap(data, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), "x", "")
    path = write_map(src, tmp_path / "m.map.gz")
    tracemalloc.start()
    try:
        dmap = read_map(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(dmap.data, data)
    assert peak < data.nbytes + 4 * 2**20  # the array and a chunk or two


def test_available_memory_is_bounded_by_the_system():
    from ingest.memory import _proc_kib, available_memory

    room = available_memory()
    assert room is not None and 0 < room <= _proc_kib(Path("/proc/meminfo"), "MemTotal")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cgroup_limit_counts_towards_available_memory(tmp_path, version):
    from ingest.memory import _cgroup_room

    mib = 2**20
    root = tmp_path / "cgroup"
    if version == "v2":
        folder, line = root / "svc", "0::/svc\n"
        files = {"memory.max": 1024 * mib, "memory.current": 600 * mib}
        stat = f"anon 1\ninactive_file {100 * mib}\n"
        parent = {"memory.max": "max", "memory.current": 900 * mib}
    else:
        folder, line = root / "memory" / "svc", "4:memory:/svc\n9:cpu:/x\n"
        files = {
            "memory.limit_in_bytes": 1024 * mib,
            "memory.usage_in_bytes": 600 * mib,
        }
        stat = f"cache 1\ntotal_inactive_file {100 * mib}\n"
        parent = {"memory.limit_in_bytes": 2**63 - 4096}
    folder.mkdir(parents=True)
    for name, value in files.items():
        (folder / name).write_text(f"{value}\n")
    (folder / "memory.stat").write_text(stat)
    for name, value in parent.items():
        (folder.parent / name).write_text(f"{value}\n")
    (tmp_path / "cgroup_file").write_text(line)
    assert _cgroup_room(tmp_path / "cgroup_file", root) == (1024 - 500) * mib
    (tmp_path / "cgroup_file").write_text("0::/gone\n")  # not mounted: no limit
    assert _cgroup_room(tmp_path / "cgroup_file", tmp_path / "none") is None
