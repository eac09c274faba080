"""Read and write cryo-EM density maps (MRC2014 / CCP4), plain, gzip or bzip2.

The header is decoded with mrcfile's own header dtype and helpers, but the file is
read by this module rather than by ``mrcfile.open``: that lets us check the header's
claims (dimensions, extended header size, mode) *before* allocating anything, so a
hostile or corrupt file cannot make us allocate gigabytes, and lets us read the data
block straight into its final array (one copy of the map in memory, even for gzip).
EMDB-era headers that mrcfile's validator rejects (``nversion=0``, ``rms=0``, wrong
machine stamp) still read; what is odd about them is collected in
``DensityMap.warnings``, never printed.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import mrcfile
import numpy as np
from mrcfile import utils as mrc_utils
from mrcfile.constants import MAP_ID
from mrcfile.dtypes import HEADER_DTYPE

from ingest.errors import MapFormatError

try:  # isal's gzip is about 2.5x faster than the standard library's.
    from isal import igzip as _fast_gzip
    from isal import isal_zlib as _isal_zlib

    _STREAM_ERRORS: tuple[type[BaseException], ...] = (
        OSError,
        EOFError,
        ValueError,
        zlib.error,
        _isal_zlib.error,
    )
except ImportError:  # pragma: no cover - isal is a declared dependency
    _fast_gzip = None
    _STREAM_ERRORS = (OSError, EOFError, ValueError, zlib.error)

log = logging.getLogger(__name__)

#: MRC modes we read: int8, int16, float32, uint16, float16.
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
#: Refuse maps with more voxels than this (1200^3, 6.9 GB as float32) unless the
#: caller raises it: a compressed file's real size is only known once decompressed.
MAX_VOXELS = 1200**3
#: Refuse an extended header larger than this.
MAX_EXTENDED_HEADER = 64 * 2**20
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_CHUNK = 8 * 2**20


@dataclass(frozen=True, eq=False)
class DensityMap:
    """A density map as deposited.

    Attributes:
        data: ``float32`` array ``[z, y, x]`` in physical axis order (reordered from
            the file's MAPC/MAPR/MAPS), shape ``(nz, ny, nx)``.
        voxel_size: Å per voxel along ``(x, y, z)``.
        origin: position of voxel ``[0, 0, 0]`` in Å, ``(x, y, z)``.
        path: source file (or a ``simulated:...`` label for simulated maps).
        sha256: sha256 of the file's bytes as stored (compressed bytes for .gz).
        mode: MRC mode of the file (0, 1, 2, 6 or 12).
        header: raw header fields a user may ask for (plain Python values).
        warnings: what was odd about the file but did not stop reading it.
        simulated: True when the density was computed from a model, not measured.
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    path: str
    sha256: str
    mode: int = 2
    header: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    simulated: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(nz, ny, nx)``."""
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def extent_angstrom(self) -> tuple[float, float, float]:
        """Box size in Å along ``(x, y, z)``."""
        nz, ny, nx = self.shape
        vx, vy, vz = self.voxel_size
        return (nx * vx, ny * vy, nz * vz)


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open_stream(path: Path) -> tuple[IO[bytes], bool]:
    """Open ``path`` for reading, decompressing gzip/bzip2 by their magic bytes.

    Returns:
        The stream and whether it is compressed.
    """
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == _GZIP_MAGIC:
        opener = _fast_gzip.open if _fast_gzip else gzip.open
        return opener(path, "rb"), True
    if magic == _BZIP2_MAGIC:
        return bz2.open(path, "rb"), True
    return open(path, "rb"), False


def _read_exact(stream: IO[bytes], buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream``; return the number of bytes read."""
    total = 0
    while total < len(buffer):
        n = stream.readinto(buffer[total:])
        if not n:
            break
        total += n
    return total


def _decode_header(raw: bytes, path: Path, notes: list[str]) -> np.recarray:
    """Decode 1024 header bytes, choosing the byte order the way mrcfile does."""
    header = np.frombuffer(raw, dtype=HEADER_DTYPE).reshape(()).view(np.recarray)
    map_id_ok = bytes(header.map)[:3] == MAP_ID[:3]
    try:
        order = mrc_utils.byte_order_from_machine_stamp(header.machst)
    except ValueError:
        order = "<"
        notes.append("unrecognised machine stamp; assumed little-endian")
    header = header.copy()
    header.dtype = header.dtype.newbyteorder(order)
    if int(header.mode) not in SUPPORTED_MODES:
        swapped = header.copy()
        swapped.dtype = header.dtype.newbyteorder(">" if order == "<" else "<")
        if int(swapped.mode) in SUPPORTED_MODES and map_id_ok:
            notes.append("machine stamp disagrees with the data's byte order")
            header = swapped
    mode = int(header.mode)
    if mode not in SUPPORTED_MODES:
        if not map_id_ok:
            raise MapFormatError(
                path,
                "not an MRC/CCP4 map (no 'MAP ' signature and no valid mode)",
                "check that the file is a .map/.mrc/.ccp4 density map",
            )
        raise MapFormatError(
            path,
            f"unsupported MRC mode {mode} (readable modes: "
            + ", ".join(f"{m}={n}" for m, n in SUPPORTED_MODES.items())
            + ")",
            "convert the map to mode 2 (float32), e.g. with mrcfile or ChimeraX",
        )
    if not map_id_ok:
        notes.append("no 'MAP ' signature in the header (pre-2000 CCP4 file?)")
    return header


def _header_fields(header: np.recarray) -> dict[str, Any]:
    """Plain-Python copy of the header fields a user may ask for."""
    labels = []
    for i in range(min(max(int(header.nlabl), 0), 10)):
        text = bytes(header.label[i]).split(b"\0")[0].decode("latin-1").strip()
        if text:
            labels.append(text)

    def xyz(rec: Any) -> list[float]:
        return [float(rec.x), float(rec.y), float(rec.z)]

    return {
        "nx": int(header.nx),
        "ny": int(header.ny),
        "nz": int(header.nz),
        "mode": int(header.mode),
        "nxstart": int(header.nxstart),
        "nystart": int(header.nystart),
        "nzstart": int(header.nzstart),
        "mx": int(header.mx),
        "my": int(header.my),
        "mz": int(header.mz),
        "cella": xyz(header.cella),
        "cellb": [
            float(header.cellb.alpha),
            float(header.cellb.beta),
            float(header.cellb.gamma),
        ],
        "mapc": int(header.mapc),
        "mapr": int(header.mapr),
        "maps": int(header.maps),
        "dmin": float(header.dmin),
        "dmax": float(header.dmax),
        "dmean": float(header.dmean),
        "rms": float(header.rms),
        "ispg": int(header.ispg),
        "nsymbt": int(header.nsymbt),
        "exttyp": bytes(header.exttyp).decode("latin-1").strip("\0 "),
        "nversion": int(header.nversion),
        "origin": xyz(header.origin),
        "labels": labels,
    }


def _check_geometry(h: dict[str, Any], path: Path, max_voxels: int) -> list[int]:
    """Validate dimensions and axis order; return the axis permutation."""
    nx, ny, nz = h["nx"], h["ny"], h["nz"]
    if min(nx, ny, nz) < 1:
        raise MapFormatError(
            path,
            f"header claims non-positive dimensions {nx}x{ny}x{nz}",
            "the file is corrupt; download it again",
        )
    if nz == 1 or ny == 1 or nx == 1:
        raise MapFormatError(
            path,
            f"is a 2D image ({nx}x{ny}x{nz}), not a 3D volume",
            "ingest 3D density maps only",
        )
    if h["ispg"] == 0 and h["mz"] == 1:
        raise MapFormatError(
            path,
            f"is a stack of {nz} 2D images (ISPG=0, MZ=1), not a 3D volume",
            "ingest 3D density maps only",
        )
    if h["ispg"] >= 401:
        raise MapFormatError(
            path,
            f"is a stack of volumes (ISPG={h['ispg']})",
            "split the stack into single volumes first",
        )
    n_voxels = nx * ny * nz
    if n_voxels > max_voxels:
        raise MapFormatError(
            path,
            f"header claims {nx}x{ny}x{nz} = {n_voxels:,} voxels, over the limit "
            f"of {max_voxels:,}",
            "the header is corrupt, or the map is too large: bin it first "
            "(or raise max_voxels)",
        )
    if not 0 <= h["nsymbt"] <= MAX_EXTENDED_HEADER:
        raise MapFormatError(
            path,
            f"header claims an extended header of {h['nsymbt']:,} bytes",
            "the file is corrupt; download it again",
        )
    crs = [h["mapc"], h["mapr"], h["maps"]]
    if sorted(crs) != [1, 2, 3]:
        raise MapFormatError(
            path,
            f"MAPC/MAPR/MAPS = {crs} is not a permutation of 1, 2, 3",
            "the header is corrupt; fix the axis order fields",
        )
    return crs


def _voxel_size(h: dict[str, Any], notes: list[str]) -> tuple[float, float, float]:
    cell = h["cella"]
    sampling = [h["mx"], h["my"], h["mz"]]
    sizes = []
    for axis, (length, m) in enumerate(zip(cell, sampling, strict=True)):
        if m > 0 and np.isfinite(length) and length > 0:
            sizes.append(float(length) / m)
        else:
            sizes.append(1.0)
            notes.append(
                f"no voxel size for axis {'xyz'[axis]} in the header; assumed 1.0 Å"
            )
    return (sizes[0], sizes[1], sizes[2])


def _origin(
    h: dict[str, Any], crs: list[int], voxel_size: tuple[float, ...], notes: list[str]
) -> tuple[float, float, float]:
    """Origin in Å from the MRC2014 ORIGIN field, else from N*START."""
    origin = h["origin"]
    if all(np.isfinite(origin)) and any(o != 0.0 for o in origin):
        return (float(origin[0]), float(origin[1]), float(origin[2]))
    if not all(np.isfinite(origin)):
        notes.append("ORIGIN field is not finite; used N*START instead")
    start_crs = [h["nxstart"], h["nystart"], h["nzstart"]]
    out = [0.0, 0.0, 0.0]
    for start, axis in zip(start_crs, crs, strict=True):
        out[axis - 1] = float(start) * voxel_size[axis - 1]
    return (out[0], out[1], out[2])


def read_map(path: str | Path, max_voxels: int = MAX_VOXELS) -> DensityMap:
    """Read a density map (.map/.mrc/.ccp4, plain, .gz or .bz2).

    Args:
        path: the map file. Compression is detected from the file's magic bytes.
        max_voxels: refuse headers claiming more voxels than this.

    Returns:
        The :class:`DensityMap`, with ``data`` as float32 ``[z, y, x]``.

    Raises:
        MapFormatError: the file is empty, truncated, not an MRC map, a 2D image or
            image stack, uses an unsupported mode, claims absurd dimensions, or
            holds NaN/Inf values.
    """
    path = Path(path)
    if not path.is_file():
        raise MapFormatError(path, "no such file", "check the path")
    size = path.stat().st_size
    if size == 0:
        raise MapFormatError(path, "file is empty (0 bytes)", "download the map again")
    notes: list[str] = []
    try:
        stream, compressed = _open_stream(path)
        with stream:
            raw = stream.read(HEADER_DTYPE.itemsize)
            if len(raw) < HEADER_DTYPE.itemsize:
                raise MapFormatError(
                    path,
                    f"truncated: only {len(raw)} bytes, less than the 1024-byte "
                    "MRC header",
                    "download the map again",
                )
            header = _decode_header(raw, path, notes)
            h = _header_fields(header)
            crs = _check_geometry(h, path, max_voxels)
            if h["nsymbt"]:
                skipped = _read_exact(stream, memoryview(bytearray(h["nsymbt"])))
                if skipped < h["nsymbt"]:
                    raise MapFormatError(
                        path,
                        "truncated inside the extended header",
                        "download the map again",
                    )
            dtype = mrc_utils.data_dtype_from_header(header)
            shape = (h["nz"], h["ny"], h["nx"])
            expected = int(np.prod(shape)) * dtype.itemsize
            if not compressed and size < HEADER_DTYPE.itemsize + h["nsymbt"] + expected:
                # Known before allocating anything: the file is too short.
                raise MapFormatError(
                    path,
                    f"truncated: {size:,} bytes, but the header announces "
                    f"{h['nx']}x{h['ny']}x{h['nz']} voxels of mode {h['mode']} "
                    f"({HEADER_DTYPE.itemsize + h['nsymbt'] + expected:,} bytes)",
                    "download the map again",
                )
            raw_data = np.empty(shape, dtype=dtype)
            got = _read_exact(stream, memoryview(raw_data.reshape(-1).view(np.uint8)))
    except _STREAM_ERRORS as err:
        if isinstance(err, MapFormatError):
            raise
        raise MapFormatError(
            path,
            f"cannot be read ({type(err).__name__}: {err})",
            "the file is corrupt or truncated; download it again",
        ) from err
    if got < expected:
        raise MapFormatError(
            path,
            f"truncated: data block has {got:,} of the {expected:,} bytes the header "
            f"announces ({h['nx']}x{h['ny']}x{h['nz']}, mode {h['mode']})",
            "download the map again",
        )
    if h["mode"] == 0 and h["nversion"] < 20140:
        notes.append(
            "mode 0 read as signed int8 (MRC2014); pre-2014 files may mean unsigned"
        )
    if h["nversion"] == 0:
        notes.append("nversion=0 (pre-MRC2014 header)")
    if h["rms"] == 0.0:
        notes.append("RMS field is 0 in the header")
    data = _to_physical_float32(raw_data, crs)
    del raw_data
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise MapFormatError(
            path,
            f"holds {bad:,} NaN/Inf values",
            "replace them (e.g. with 0) or re-export the map",
        )
    voxel_size = _voxel_size(h, notes)
    origin = _origin(h, crs, voxel_size, notes)
    return DensityMap(
        data=data,
        voxel_size=voxel_size,
        origin=origin,
        path=str(path),
        sha256=sha256_file(path),
        mode=h["mode"],
        header=h,
        warnings=tuple(notes),
    )


def _to_physical_float32(raw: np.ndarray, crs: list[int]) -> np.ndarray:
    """Reorder ``[section, row, column]`` to ``[z, y, x]`` and convert to float32.

    ``crs`` gives the physical axis (1=x, 2=y, 3=z) of columns, rows and sections.
    """
    # Physical axis of each array dimension: dim 0 = sections, 1 = rows, 2 = columns.
    dim_axis = [crs[2], crs[1], crs[0]]
    order = [dim_axis.index(axis) for axis in (3, 2, 1)]
    view = raw.transpose(order)
    if view.dtype == np.float32 and view.dtype.isnative and order == [0, 1, 2]:
        return raw
    return np.ascontiguousarray(view, dtype=np.float32)


def write_map(dmap: DensityMap, path: str | Path, compress: bool | None = None) -> Path:
    """Write a map as MRC2014 float32 (gzip when ``path`` ends in .gz).

    Args:
        dmap: the map; written with MAPC/MAPR/MAPS = 1, 2, 3.
        path: destination.
        compress: force gzip on or off; default from the file name.

    Returns:
        The path written.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    with mrcfile.new(
        path, overwrite=True, compression="gzip" if compress else None
    ) as mrc:
        mrc.set_data(np.ascontiguousarray(dmap.data, dtype=np.float32))
        mrc.voxel_size = tuple(dmap.voxel_size)
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = dmap.origin
        labels = list(dmap.header.get("labels", []))[:10]
        for label in labels:
            mrc.add_label(label[:80])
    return path


def gunzip_bytes(path: str | Path) -> bytes:
    """Decompress a whole gzip file (isal when installed); used by benchmarks."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if _fast_gzip is not None:
        return _fast_gzip.decompress(blob)
    return gzip.decompress(blob)  # pragma: no cover


__all__ = [
    "DensityMap",
    "read_map",
    "write_map",
    "sha256_file",
    "MAX_VOXELS",
    "SUPPORTED_MODES",
]
