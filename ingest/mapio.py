"""Read and write cryo-EM density maps (MRC2014 / CCP4), plain, gzip or bzip2.

The header is decoded with mrcfile's own header dtype and helpers, but the file is
read by this module rather than by ``mrcfile.open``: that lets us check the header's
claims (dimensions, extended header size, mode) *before* allocating anything, so a
hostile or corrupt file cannot make us allocate gigabytes, and lets us read the data
block straight into its final array (one copy of the map in memory, even for gzip).
EMDB-era headers that mrcfile's validator rejects (``nversion=0``, ``rms=0``, wrong
machine stamp) still read; what is odd about them is collected in
``DensityMap.warnings``, never printed.

**Memory.** Before the data block is allocated, the size the header announces is
checked against the caller's limit (``read_map(..., max_bytes=N)``: a server passes
its own per-map limit) and against the memory this process can still get
(:func:`available_memory`: the OS's available memory, the cgroup's limit, the
address-space limit). A gzip file cannot hold more than about 1032 times its size
(the deflate format's limit), so a small ``.gz`` announcing a huge grid is refused
as truncated before anything is allocated. Compressed data is decompressed straight
into the final array in bounded chunks: reading a map takes its stored size, plus its
float32 size when the mode or axis order needs a conversion, and nothing more. The
file's sha256 is taken from the bytes as the decompressor reads them (one read of
the file).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import os
import resource
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import mrcfile
import numpy as np
from mrcfile import utils as mrc_utils
from mrcfile.constants import MAP_ID
from mrcfile.dtypes import HEADER_DTYPE

from ingest.errors import MapFormatError, MapTooLargeError

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
#: Bytes decompressed per call into the data array (a decompressing stream makes
#: a temporary of about twice this).
_READ_CHUNK = 2**20
#: Deflate (gzip) cannot compress better than 1032:1 (a 258-byte match costs at
#: least two bits), so a gzip file of n bytes holds at most this many times n.
_DEFLATE_MAX_RATIO = 1032


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


def _size(n: float) -> str:
    """``n`` bytes, readable: ``"6.4 GiB"``, ``"820 MiB"``, ``"12 KiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def _read_int(path: Path) -> int | None:
    """The integer in a /proc or /sys file (``None`` when missing or ``max``)."""
    try:
        text = path.read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: Path, key: str) -> int:
    """A ``key value`` line of a cgroup ``memory.stat`` file (0 when missing)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _proc_kib(path: Path, key: str) -> int | None:
    """A ``Key: N kB`` line of /proc/meminfo or /proc/self/status, in bytes."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: Per cgroup version: (folder under the mount, limit file, usage file, the
#: ``memory.stat`` key of the reclaimable file cache).
_CGROUP_FILES = {
    "v2": ("", "memory.max", "memory.current", "inactive_file"),
    "v1": (
        "memory",
        "memory.limit_in_bytes",
        "memory.usage_in_bytes",
        "total_inactive_file",
    ),
}


def _cgroup_room(cgroup_file: Path, root: Path) -> int | None:
    """Bytes left under this process's cgroup memory limits (v2 or v1), the
    tightest over its cgroup and the cgroups above it; ``None`` without a limit.

    Usage includes the page cache, which the kernel reclaims before it kills
    anything, so the inactive file cache is not counted as used.
    """
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if controllers == "":
            version = "v2"
        elif "memory" in controllers.split(","):
            version = "v1"
        else:
            continue
        sub, limit_file, usage_file, cache_key = _CGROUP_FILES[version]
        base = root / sub if sub else root
        folder = base / rel.lstrip("/")
        if not folder.is_dir():  # a container sees its own cgroup as the root
            folder = base
        while True:
            limit = _read_int(folder / limit_file)
            usage = _read_int(folder / usage_file)
            if limit is not None and usage is not None and limit < 2**60:
                used = usage - _stat_field(folder / "memory.stat", cache_key)
                rooms.append(limit - max(used, 0))
            if folder == base:
                break
            folder = folder.parent
    return min(rooms) if rooms else None


def available_memory() -> int | None:
    """Bytes this process can still allocate, as far as the system says.

    The least of: the kernel's estimate of available memory (``MemAvailable`` in
    /proc/meminfo); the room left under the cgroup's memory limit (a container's
    or a service's, v2 or v1); the room left under this process's address-space
    and data limits (``RLIMIT_AS``, ``RLIMIT_DATA``). Written here rather than
    taken from psutil, which is not a dependency and reports ``MemAvailable``
    only: a container or a capped process would be told about memory it cannot
    get.

    Returns:
        Bytes, or ``None`` when nothing is known (not Linux).
    """
    proc = Path("/proc")
    rooms = [_proc_kib(proc / "meminfo", "MemAvailable")]
    rooms.append(_cgroup_room(proc / "self" / "cgroup", Path("/sys/fs/cgroup")))
    for limit, used in (
        (resource.RLIMIT_AS, "VmSize"),
        (resource.RLIMIT_DATA, "VmData"),
    ):
        soft = resource.getrlimit(limit)[0]
        in_use = _proc_kib(proc / "self" / "status", used)
        if soft != resource.RLIM_INFINITY and in_use is not None:
            rooms.append(soft - in_use)
    known = [max(room, 0) for room in rooms if room is not None]
    return min(known) if known else None


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_READ_CHUNK))  # one buffer, reused
    with open(path, "rb") as fh:
        while n := fh.readinto(buffer):
            digest.update(buffer[:n])
    return digest.hexdigest()


class _HashingReader(io.RawIOBase):
    """A file read front to back that feeds every byte read to sha256: the
    decompressor reads the file through it, so the content hash needs no second
    read of the file (:meth:`hexdigest` hashes what the reading left)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n or 0

    def hexdigest(self) -> str:
        """The sha256 of the whole file (reading what is left of it)."""
        buffer = memoryview(bytearray(_READ_CHUNK))
        while self.readinto(buffer):
            pass
        return self._digest.hexdigest()


def _open_stream(fh: IO[bytes]) -> tuple[IO[bytes], str]:
    """A stream of the map's bytes from ``fh`` (a file at its start),
    decompressing gzip/bzip2 by their magic bytes.

    Returns:
        The stream (closing it leaves ``fh`` open) and its compression:
        ``"gzip"``, ``"bzip2"`` or ``""``.
    """
    reader = io.BufferedReader(fh)  # type: ignore[arg-type]
    magic = reader.peek(3)[:3]
    if magic[:2] == _GZIP_MAGIC:
        opener = _fast_gzip.open if _fast_gzip else gzip.open
        return opener(reader, "rb"), "gzip"
    if magic == _BZIP2_MAGIC:
        return bz2.open(reader, "rb"), "bzip2"
    return _Unclosed(reader), ""


class _Unclosed(io.BufferedIOBase):
    """``stream`` whose ``close`` leaves it open (a plain map's stream is the
    file, which its opener closes)."""

    def __init__(self, stream: io.BufferedReader) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._stream.read(size)

    def readinto(self, buffer: Any) -> int:
        return self._stream.readinto(buffer)


def _read_exact(stream: IO[bytes], buffer: memoryview) -> int:
    """Fill ``buffer`` from ``stream``; return the number of bytes read.

    At most :data:`_READ_CHUNK` bytes a call: a decompressing stream's
    ``readinto`` reads into a temporary of the size asked for, which for the whole
    data block would double the memory a compressed map takes.
    """
    total = 0
    while total < len(buffer):
        n = stream.readinto(buffer[total : total + _READ_CHUNK])
        if not n:
            break
        total += n
    return total


def _skip(stream: IO[bytes], n_bytes: int) -> int:
    """Read and drop ``n_bytes`` from ``stream``; return how many there were."""
    skipped = 0
    while skipped < n_bytes:
        block = stream.read(min(_CHUNK, n_bytes - skipped))
        if not block:
            break
        skipped += len(block)
    return skipped


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


def _stat_map(path: Path) -> os.stat_result:
    """``os.stat`` of a map file, or the one line saying why it cannot be read."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise MapFormatError(path, "no such file", "check the path") from None
    except PermissionError:
        raise MapFormatError(
            path,
            "cannot be read: permission denied (on the file or a folder above it)",
            "check the permissions of the file and its folders for the user "
            "running this",
        ) from None
    except OSError as err:
        raise MapFormatError(
            path, f"cannot be read: {err.strerror or err}", "check the path"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise MapFormatError(
            path, "no such file (it is a folder)", "pass a map file in it"
        )
    if not stat.S_ISREG(st.st_mode):
        raise MapFormatError(
            path, "no such file (not a regular file)", "pass a map file"
        )
    return st


def _read_error(path: Path, err: BaseException) -> MapFormatError:
    """The one line for an exception raised while opening or reading a map."""
    if isinstance(err, PermissionError):
        return MapFormatError(
            path,
            "cannot be read: permission denied",
            "check the file's permissions for the user running this "
            "(e.g. ls -l, chmod a+r)",
        )
    if isinstance(err, OSError) and err.errno is not None:
        # a system error (EIO, ESTALE, ...), not the bytes: the file may be fine
        return MapFormatError(
            path,
            f"cannot be read: {err.strerror or err}",
            "check the disk or network share that holds it, then try again",
        )
    return MapFormatError(
        path,
        f"cannot be read ({type(err).__name__}: {err})",
        "the file is corrupt or truncated; download it again",
    )


def _check_size(
    path: Path,
    h: dict[str, Any],
    stored: int,
    need: int,
    gzip_size: int | None,
    max_bytes: int | None,
) -> None:
    """Refuse, before allocating, a map the file cannot hold or the caller or the
    memory cannot take.

    Args:
        path: the map, for the message.
        h: its header fields.
        stored: bytes the header announces in all (header, extended header, data).
        need: bytes reading it allocates (data block, plus the float32 copy).
        gzip_size: the file's size when it is gzip-compressed, else None.
        max_bytes: the caller's limit on the map's float32 size, or None.

    Raises:
        MapFormatError: a gzip file too small for what its header announces.
        MapTooLargeError: over ``max_bytes`` or over the memory available.
    """
    grid = f"{h['nx']}x{h['ny']}x{h['nz']}"
    if gzip_size is not None:
        if stored > _DEFLATE_MAX_RATIO * gzip_size:
            raise MapFormatError(
                path,
                f"truncated or corrupt: the header announces {grid} voxels of mode "
                f"{h['mode']} ({_size(stored)}), more than a gzip file of "
                f"{gzip_size:,} bytes can hold",
                "download the map again",
            )
    f32 = 4 * h["nx"] * h["ny"] * h["nz"]
    if max_bytes is not None and f32 > max_bytes:
        raise MapTooLargeError(
            path,
            f"the header announces {grid} voxels ({_size(f32)} as float32), over "
            f"the limit of {_size(max_bytes)} per map",
            "bin or crop the map to fewer voxels first",
        )
    room = available_memory()
    if room is not None and need > room:
        raise MapTooLargeError(
            path,
            f"reading it needs {_size(need)} ({grid} voxels of mode {h['mode']}), "
            f"but only {_size(room)} of memory is available",
            "free memory or use a machine with more, or bin the map to fewer "
            "voxels first",
        )


def _read_header(
    stream: IO[bytes], path: Path, notes: list[str], max_voxels: int
) -> tuple[dict[str, Any], list[int], np.dtype]:
    """Read and check the 1024-byte header at the start of ``stream``.

    Returns:
        Its fields, the axis order (MAPC, MAPR, MAPS) and the data block's dtype.

    Raises:
        MapFormatError: truncated, not an MRC map, absurd dimensions.
    """
    raw = stream.read(HEADER_DTYPE.itemsize)
    if len(raw) < HEADER_DTYPE.itemsize:
        raise MapFormatError(
            path,
            f"truncated: only {len(raw)} bytes, less than the 1024-byte MRC header",
            "download the map again",
        )
    header = _decode_header(raw, path, notes)
    h = _header_fields(header)
    crs = _check_geometry(h, path, max_voxels)
    return h, crs, mrc_utils.data_dtype_from_header(header)


@dataclass(frozen=True)
class MapSize:
    """What a map's header announces: enough to budget memory before reading it.

    Attributes:
        shape: voxels per axis in file order (sections, rows, columns).
        itemsize: bytes per stored voxel (the header's mode).
        copies: reading makes a float32 copy (the mode is not float32, or the axes
            are not in ``[z, y, x]`` order).
    """

    shape: tuple[int, int, int]
    itemsize: int
    copies: bool

    @property
    def float32_bytes(self) -> int:
        """Bytes of the map as float32 (what :func:`read_map` returns)."""
        return 4 * int(np.prod(self.shape))

    @property
    def read_bytes(self) -> int:
        """Bytes :func:`read_map` allocates: the data block, plus the float32
        copy when there is one."""
        stored = self.itemsize * int(np.prod(self.shape))
        return stored + (self.float32_bytes if self.copies else 0)


def map_size(path: str | Path, max_voxels: int = MAX_VOXELS) -> MapSize:
    """The size a map's header announces, reading only its header (the first
    1024 bytes, decompressed): a scheduler budgets memory with it before the
    map is read.

    Args:
        path: the map file (plain, .gz or .bz2).
        max_voxels: refuse headers claiming more voxels than this.

    Returns:
        Its :class:`MapSize`.

    Raises:
        MapFormatError: the file cannot be read, or its header is truncated, not
            an MRC header, or claims absurd dimensions.
    """
    path = Path(path)
    _stat_map(path)
    try:
        with open(path, "rb") as fh, _open_stream(fh)[0] as stream:
            h, crs, dtype = _read_header(stream, path, [], max_voxels)
    except _STREAM_ERRORS as err:
        if isinstance(err, MapFormatError):
            raise
        raise _read_error(path, err) from err
    shape = (int(h["nz"]), int(h["ny"]), int(h["nx"]))
    return MapSize(shape, dtype.itemsize, not _is_final_layout(dtype, crs))


def read_map(
    path: str | Path, max_voxels: int = MAX_VOXELS, max_bytes: int | None = None
) -> DensityMap:
    """Read a density map (.map/.mrc/.ccp4, plain, .gz or .bz2).

    Args:
        path: the map file. Compression is detected from the file's magic bytes.
        max_voxels: refuse headers claiming more voxels than this.
        max_bytes: refuse maps whose float32 array (``nx * ny * nz * 4`` bytes,
            what the returned ``data`` holds) is larger than this, before anything
            is allocated: a server passes its own per-map limit here. ``None``: no
            limit of the caller's own. Either way, a map whose reading needs more
            memory than this process can get (:func:`available_memory`) is refused
            before allocating.

    Returns:
        The :class:`DensityMap`, with ``data`` as float32 ``[z, y, x]``.

    Raises:
        MapTooLargeError: the map is over ``max_bytes`` or does not fit in the
            memory available (a :class:`MapFormatError`).
        MapFormatError: the file is missing, unreadable (permissions, I/O), empty,
            truncated, not an MRC map, a 2D image or image stack, uses an
            unsupported mode, claims absurd dimensions, or holds NaN/Inf values.
    """
    path = Path(path)
    size = _stat_map(path).st_size
    if size == 0:
        raise MapFormatError(path, "file is empty (0 bytes)", "download the map again")
    notes: list[str] = []
    grid, need = "the", 0  # for a MemoryError message before the header is known
    try:
        with open(path, "rb") as fh:
            hashing = _HashingReader(fh)
            stream, compression = _open_stream(hashing)
            with stream:
                h, crs, dtype = _read_header(stream, path, notes, max_voxels)
                grid = f"{h['nx']}x{h['ny']}x{h['nz']}"
                shape = (h["nz"], h["ny"], h["nx"])
                expected = int(np.prod(shape)) * dtype.itemsize
                stored = HEADER_DTYPE.itemsize + h["nsymbt"] + expected
                if not compression and size < stored:
                    # Known before allocating anything: the file is too short.
                    raise MapFormatError(
                        path,
                        f"truncated: {size:,} bytes, but the header announces "
                        f"{h['nx']}x{h['ny']}x{h['nz']} voxels of mode {h['mode']} "
                        f"({stored:,} bytes)",
                        "download the map again",
                    )
                copies = not _is_final_layout(dtype, crs)
                need = expected + (4 * int(np.prod(shape)) if copies else 0)
                gzip_size = size if compression == "gzip" else None
                _check_size(path, h, stored, need, gzip_size, max_bytes)
                if h["nsymbt"]:
                    skipped = _skip(stream, h["nsymbt"])
                    if skipped < h["nsymbt"]:
                        raise MapFormatError(
                            path,
                            "truncated inside the extended header",
                            "download the map again",
                        )
                raw_data = np.empty(shape, dtype=dtype)
                got = _read_exact(
                    stream, memoryview(raw_data.reshape(-1).view(np.uint8))
                )
            # the content hash: the bytes read so far were hashed on the way
            sha256 = hashing.hexdigest()
        if got < expected:
            raise MapFormatError(
                path,
                f"truncated: data block has {got:,} of the {expected:,} bytes the "
                f"header announces ({h['nx']}x{h['ny']}x{h['nz']}, mode {h['mode']})",
                "download the map again",
            )
        data = _to_physical_float32(raw_data, crs)
        del raw_data
    except MemoryError:
        raise MapTooLargeError(
            path,
            f"ran out of memory reading its {grid} voxels ({_size(need)})",
            "free memory or use a machine with more, or bin the map to fewer "
            "voxels first",
        ) from None
    except _STREAM_ERRORS as err:
        if isinstance(err, MapFormatError):
            raise
        raise _read_error(path, err) from err
    if h["mode"] == 0 and h["nversion"] < 20140:
        notes.append(
            "mode 0 read as signed int8 (MRC2014); pre-2014 files may mean unsigned"
        )
    if h["nversion"] == 0:
        notes.append("nversion=0 (pre-MRC2014 header)")
    if h["rms"] == 0.0:
        notes.append("RMS field is 0 in the header")
    bad = _count_non_finite(data)
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
        sha256=sha256,
        mode=h["mode"],
        header=h,
        warnings=tuple(notes),
    )


def _count_non_finite(data: np.ndarray) -> int:
    """How many voxels are NaN or Inf, counted a slab at a time (no map-sized
    temporary)."""
    flat = data.reshape(-1)
    return sum(
        flat[i : i + _READ_CHUNK].size
        - int(np.count_nonzero(np.isfinite(flat[i : i + _READ_CHUNK])))
        for i in range(0, flat.size, _READ_CHUNK)
    )


def _is_final_layout(dtype: np.dtype, crs: list[int]) -> bool:
    """Whether the data block read as is already is the float32 ``[z, y, x]``."""
    return dtype == np.float32 and dtype.isnative and crs == [1, 2, 3]


def _to_physical_float32(raw: np.ndarray, crs: list[int]) -> np.ndarray:
    """Reorder ``[section, row, column]`` to ``[z, y, x]`` and convert to float32.

    ``crs`` gives the physical axis (1=x, 2=y, 3=z) of columns, rows and sections.
    """
    # Physical axis of each array dimension: dim 0 = sections, 1 = rows, 2 = columns.
    dim_axis = [crs[2], crs[1], crs[0]]
    order = [dim_axis.index(axis) for axis in (3, 2, 1)]
    if _is_final_layout(raw.dtype, crs):
        return raw
    view = raw.transpose(order)
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
