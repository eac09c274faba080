"""Benchmark: what bad input does to ``read_map`` + ``canonicalize_poses``.

Builds a corpus of bad maps (all synthetic: blank, constant, nearly constant,
tiny noise, a single spike, huge sizes announced by small ``.gz`` files, NaN/Inf,
truncated files, absurd contours) next to two real sample maps and one synthetic
normal map as the baseline, then reads and canonicalizes each (64^3, every
candidate pose, as a search query does) in a fresh child process. Per case it
records the outcome (``ok``, ``refused`` with its one line, or ``crashed`` with
the exception that escaped), the child's peak RSS, its RSS after the imports, the
map's float32 size as announced by its header, and the ratio
``(peak - after imports) / float32 size``.

Each child runs under an address-space cap (``--cap-gib``, default 6 GiB) so that
a bad file cannot take the machine: a ``crashed: MemoryError`` row means the code
wanted more than the cap. With ``--before REF`` every case also runs against the
``ingest`` package of git revision ``REF`` (checked out into a temporary folder),
side by side in the same run.

It also renders the six sample maps' candidate poses (grid 32, as a query) under
each code, with BLAS as it comes, on one thread, and with another CPU's kernels
(``BLAS_SETTINGS``), and compares them:
how far each candidate is from the nearest one of the other run, and the primary
poses' angle and correlation.

    $ python -m benchmarks.bench_bad_input                # this code
    $ python -m benchmarks.bench_bad_input --before main  # and main's, side by side
    $ python -m benchmarks.bench_bad_input --only blank_zeros_300_gz --before main
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from benchmarks.common import ROOT, add_out_argument, machine_info, save_result

SAMPLES = ROOT / "data" / "maps"
_GIB = 2**30
_CHUNK = 64 * 2**20


@dataclass(frozen=True)
class Case:
    """One corpus entry: the file, its announced grid and mode, the contour."""

    name: str
    kind: str  # "normal" or "bad"
    what: str
    make: Callable[[Path], Path]
    shape: tuple[int, int, int]  # (nx, ny, nz) as the header announces it
    contour: float | None = None


# --- writing the corpus ---------------------------------------------------------


def mrc_header(shape: tuple[int, int, int], mode: int = 2) -> bytes:
    """A valid MRC2014 header (1 Å voxels) announcing ``shape`` (nx, ny, nz)."""
    with tempfile.TemporaryDirectory() as tmp:
        dtype = {0: np.int8, 2: np.float32}[mode]
        with mrcfile.new(Path(tmp) / "h.mrc") as mrc:
            mrc.set_data(np.zeros((2, 2, 2), dtype=dtype))
            mrc.voxel_size = 1.0
        raw = bytearray((Path(tmp) / "h.mrc").read_bytes()[:1024])
    struct.pack_into("<3i", raw, 0, *shape)  # NX, NY, NZ
    struct.pack_into("<3i", raw, 28, *shape)  # MX, MY, MZ
    struct.pack_into("<3f", raw, 40, *(float(n) for n in shape))  # CELLA
    return bytes(raw)


def write_streamed(
    path: Path, header: bytes, blocks: Iterable[bytes | memoryview], gz: bool
) -> Path:
    """Write ``header`` and ``blocks`` to ``path``, streamed through gzip when
    ``gz`` (so that gigabytes of zeros never sit in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31) if gz else None
    with open(path, "wb") as fh:
        for block in itertools.chain([header], blocks):  # one block at a time
            fh.write(packer.compress(block) if packer else block)
        if packer:
            fh.write(packer.flush())
    return path


def zeros(n_bytes: int) -> Iterator[memoryview]:
    """``n_bytes`` zero bytes, in blocks of at most 64 MiB."""
    block = memoryview(bytes(min(_CHUNK, n_bytes)))
    while n_bytes > 0:
        yield block[: min(len(block), n_bytes)]
        n_bytes -= len(block)


def _blank(shape: tuple[int, int, int], mode: int = 2, gz: bool = True):
    def make(path: Path) -> Path:
        itemsize = 1 if mode == 0 else 4
        n = int(np.prod(shape)) * itemsize
        return write_streamed(path, mrc_header(shape, mode), zeros(n), gz)

    return make


def _array(fn: Callable[[np.random.Generator], np.ndarray], gz: bool = False):
    """A map of the float32 array ``fn(rng)`` (``[z, y, x]``)."""

    def make(path: Path) -> Path:
        data = np.ascontiguousarray(fn(np.random.default_rng(0)), dtype=np.float32)
        nz, ny, nx = data.shape
        return write_streamed(
            path, mrc_header((nx, ny, nz)), iter([data.tobytes()]), gz
        )

    return make


def _liar_gz(shape: tuple[int, int, int]):
    """A .gz whose header announces ``shape`` but holds 6^3 voxels of data."""

    def make(path: Path) -> Path:
        data = np.ones((6, 6, 6), np.float32).tobytes()
        return write_streamed(path, mrc_header(shape), iter([data]), gz=True)

    return make


def _truncated(sample: str, keep: int):
    def make(path: Path) -> Path:
        path.write_bytes((SAMPLES / sample).read_bytes()[:keep])
        return path

    return make


def _sample(name: str):
    return lambda path: SAMPLES / name


def _molecule(n: int) -> Callable[[np.random.Generator], np.ndarray]:
    """A SYNTHETIC molecule: three Gaussian lobes of different size in an ``n``^3
    box, plus noise at 2 % of the peak (like an unmasked map)."""

    def fn(rng: np.random.Generator) -> np.ndarray:
        axis = np.arange(n, dtype=np.float32) - n / 2
        z, y, x = axis[:, None, None], axis[None, :, None], axis[None, None, :]
        data = np.zeros((n, n, n), np.float32)
        for (cx, cy, cz), s, a in (
            ((0, 0, 0), n / 10, 1.0),
            ((n / 8, 0, 0), n / 16, 0.8),
            ((0, n / 7, n / 12), n / 20, 0.6),
        ):
            data += a * np.exp(
                -((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s)
            )
        data += rng.normal(scale=0.02, size=data.shape).astype(np.float32)
        return data

    return fn


def _spike(n: int):
    def fn(rng: np.random.Generator) -> np.ndarray:
        data = np.zeros((n, n, n), np.float32)
        data[n // 2, n // 3, n // 4] = 1.0
        return data

    return fn


def _with_nan(n: int):
    def fn(rng: np.random.Generator) -> np.ndarray:
        data = np.ones((n, n, n), np.float32)
        data[1, 2, 3] = np.nan
        return data

    return fn


def corpus() -> list[Case]:
    """The cases, normal maps first."""
    g = 200
    n3 = (g, g, g)
    mol = _molecule(240)
    return [
        Case("emd_1832", "normal", "real EMDB map", _sample("emd_1832.map"), (64,) * 3),
        Case(
            "emd_3001_gz",
            "normal",
            "real EMDB map, gzip, axes reordered",
            _sample("emd_3001.map.gz"),
            (43, 25, 73),
        ),
        Case(
            "molecule_240",
            "normal",
            "synthetic three-lobe molecule, 240^3, 2 % noise",
            _array(mol),
            (240,) * 3,
        ),
        Case(
            "blank_zeros_300_gz",
            "bad",
            "300^3 zeros, gzip (about 105 KB)",
            _blank((300,) * 3),
            (300,) * 3,
        ),
        Case(
            "blank_zeros_600_gz",
            "bad",
            "600^3 zeros, gzip (about 840 KB)",
            _blank((600,) * 3),
            (600,) * 3,
        ),
        Case(
            "blank_zeros_1199_gz",
            "bad",
            "1199^3 zeros, gzip (about 6.7 MB)",
            _blank((1199,) * 3),
            (1199,) * 3,
        ),
        Case(
            "blank_int8_400_gz",
            "bad",
            "400^3 zeros, mode 0 (int8), gzip",
            _blank((400,) * 3, mode=0),
            (400,) * 3,
        ),
        Case(
            "constant_200",
            "bad",
            "200^3 of 5.0",
            _array(lambda r: np.full(n3, 5.0)),
            n3,
        ),
        Case(
            "nearly_constant_200",
            "bad",
            "200^3 of 1.0 plus noise of 1e-7",
            _array(lambda r: 1.0 + 1e-7 * r.normal(size=n3)),
            n3,
        ),
        Case(
            "tiny_noise_200",
            "bad",
            "200^3 of Gaussian noise of 1e-6 (no molecule)",
            _array(lambda r: 1e-6 * r.normal(size=n3)),
            n3,
        ),
        Case(
            "spike_200", "bad", "200^3 zeros and one voxel of 1", _array(_spike(g)), n3
        ),
        Case("nan_200", "bad", "200^3 ones and one NaN", _array(_with_nan(g)), n3),
        Case(
            "liar_gz_1000",
            "bad",
            "gzip header announcing 1000^3, holding 6^3 voxels",
            _liar_gz((1000,) * 3),
            (1000,) * 3,
        ),
        Case(
            "truncated_gz",
            "bad",
            "emd_3001.map.gz cut at 50 kB",
            _truncated("emd_3001.map.gz", 50_000),
            (43, 25, 73),
        ),
        Case(
            "truncated_plain",
            "bad",
            "emd_5625.map cut at 300 kB",
            _truncated("emd_5625.map", 300_000),
            (56,) * 3,
        ),
        *[
            Case(
                f"molecule_240_contour_{label}",
                "bad",
                f"the 240^3 molecule with contour {value!r}",
                _array(mol),
                (240,) * 3,
                value,
            )
            for label, value in (
                ("-1e308", -1e308),
                ("1e308", 1e308),
                ("nan", float("nan")),
                ("inf", float("inf")),
                ("-inf", float("-inf")),
                ("-1", -1.0),
            )
        ],
        Case(
            "molecule_240_contour_-0.1",
            "stress",
            "the 240^3 molecule with a contour just above its minimum: nearly "
            "every voxel is inside (the most canonicalization can be asked to hold)",
            _array(mol),
            (240,) * 3,
            -0.1,
        ),
        Case(
            "tiny_noise_200_contour_0",
            "stress",
            "the tiny noise map contoured at 0: half the voxels inside, in "
            "hundreds of thousands of pieces",
            _array(lambda r: 1e-6 * r.normal(size=n3)),
            n3,
            0.0,
        ),
    ]


# --- running one case in a child ------------------------------------------------


def _status(field: str) -> int:
    """A size from /proc/self/status (``VmRSS``, ``VmPeak``, ...), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _child(path: str, contour: float | None, code: str | None, grid: int) -> None:
    """Read + canonicalize ``path``; print one JSON line about it."""
    if code:
        sys.path.insert(0, code)
    from ingest import IngestError, canonicalize_poses, read_map

    base = _status("VmRSS")
    t0 = time.perf_counter()
    try:
        dmap = read_map(path)
        poses = canonicalize_poses(dmap, contour=contour, grid=grid)
        outcome, message = "ok", f"{len(poses)} pose(s)"
    except IngestError as exc:
        outcome, message = "refused", str(exc)
    except BaseException as exc:  # noqa: BLE001 - what escaped is the finding
        outcome, message = "crashed", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    line = {"outcome": outcome, "message": message, "seconds": seconds}
    line.update(peak_rss=peak, rss_after_imports=base, peak_vm=_status("VmPeak"))
    print(json.dumps(line))


def _cap(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_case(
    case: Case, path: Path, code: Path | None, cap: int, grid: int
) -> dict[str, Any]:
    """Run one case in a fresh child under the address-space ``cap``."""
    cmd = [sys.executable, "-m", "benchmarks.bench_bad_input", "--child", str(path)]
    cmd += ["--grid", str(grid)]
    if case.contour is not None:
        cmd += [f"--contour={case.contour!r}"]
    if code is not None:
        cmd += ["--code", str(code)]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=_cap(cap),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(nothing)"])[-1]
        return {"outcome": "died", "message": f"exit {proc.returncode}: {tail}"}
    row = json.loads(lines[-1])
    row["message"] = row["message"].replace(str(path.parent) + "/", "")
    row["one_line"] = "\n" not in row["message"]
    f32 = 4 * int(np.prod(case.shape))
    row["ratio_peak_over_f32"] = round(row["peak_rss"] / f32, 3)
    row["ratio_growth_over_f32"] = round(
        (row["peak_rss"] - row["rss_after_imports"]) / f32, 3
    )
    row["seconds"] = round(row["seconds"], 3)
    return row


def _checkout(ref: str, folder: Path) -> Path:
    """The ``ingest`` package of git revision ``ref``, extracted into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "ingest.tar"
    with open(archive, "wb") as fh:
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "ingest"], stdout=fh, check=True
        )
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _poses_child(out: str, code: str | None) -> None:
    """Candidate poses (grid 32, as a query) of the sample maps, to ``out``."""
    if code:
        sys.path.insert(0, code)
    from ingest import canonicalize_poses, find_entries, read_header, read_map

    arrays = {}
    for entry in find_entries(SAMPLES):
        meta = read_header(entry.header_path) if entry.header_path else None
        poses = canonicalize_poses(read_map(entry.map_path), grid=32, metadata=meta)
        name = Path(entry.map_path).name
        arrays[f"{name}:rotations"] = np.stack([p.rotation for p in poses])
        arrays[f"{name}:primary"] = poses[0].values
    np.savez(out, **arrays)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees of the rotation between two rotation matrices."""
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


def _compare_poses(ref: Path, other: Path) -> dict[str, Any]:
    """Per sample map: candidate counts, how far each of ``other``'s candidates is
    from the nearest of ``ref``'s, and the primary poses' angle and correlation."""
    a, b = np.load(ref), np.load(other)
    rows = {}
    for key in sorted(k for k in a.files if k.endswith(":rotations")):
        name = key.split(":")[0]
        ra, rb = a[key], b[key]
        va, vb = (x[f"{name}:primary"].ravel() for x in (a, b))
        rows[name] = {
            "candidates": [len(ra), len(rb)],
            "max_deg_to_nearest": max(min(_angle(r, q) for q in ra) for r in rb),
            "primary_deg": _angle(ra[0], rb[0]),
            "primary_correlation": float(np.corrcoef(va, vb)[0, 1]),
        }
    return rows


#: BLAS settings the sample poses are rendered under: the default, one thread,
#: and the kernels OpenBLAS would pick on an older CPU.
BLAS_SETTINGS = {
    "default": {},
    "1_thread": {"OPENBLAS_NUM_THREADS": "1"},
    "sandybridge_kernels": {"OPENBLAS_CORETYPE": "Sandybridge"},
}


def sample_poses(before: Path | None, folder: Path) -> dict[str, Any]:
    """The sample maps' candidate poses under each code and each of
    :data:`BLAS_SETTINGS`, compared (``before`` only with ``--before``)."""
    runs = {}
    for label, code in (("after", None), ("before", before)):
        if label == "before" and before is None:
            continue
        for setting, env_vars in BLAS_SETTINGS.items():
            out = folder / f"{label}_{setting}.npz"
            cmd = [sys.executable, "-m", "benchmarks.bench_bad_input"]
            cmd += ["--poses-out", str(out)] + (["--code", str(code)] if code else [])
            env = {**os.environ, **env_vars}
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, timeout=900)
            runs[label, setting] = out
    labels = ["after", "before"] if before is not None else ["after"]
    result = {}
    if before is not None:
        result["after_vs_before"] = _compare_poses(
            runs["before", "default"], runs["after", "default"]
        )
    for label in labels:
        for setting in list(BLAS_SETTINGS)[1:]:
            result[f"{label}_{setting}_vs_{label}"] = _compare_poses(
                runs[label, "default"], runs[label, setting]
            )
    return result


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f}"


def print_table(result: dict[str, Any]) -> None:
    """One line per case and code version: outcome, peak RSS, growth ratio."""
    print(
        f"{'case':34} {'code':6} {'f32 MiB':>8} {'peak MiB':>9} {'ratio':>7}  outcome"
    )
    for row in result["cases"]:
        for version in ("before", "after"):
            run = row.get(version)
            if run is None:
                continue
            ratio = run.get("ratio_growth_over_f32")
            print(
                f"{row['name']:34} {version:6} {_mib(row['f32_bytes']):>8} "
                f"{_mib(run.get('peak_rss')):>9} "
                f"{'-' if ratio is None else f'{ratio:.2f}':>7}  "
                f"{run['outcome']}: {run['message'][:90]}"
            )
    for label, maps in result.get("sample_poses", {}).items():
        print(f"\nsample poses, {label}:")
        for name, row in maps.items():
            print(
                f"  {name:20} candidates {row['candidates']}, each within "
                f"{row['max_deg_to_nearest']:.3f} deg; primary "
                f"{row['primary_deg']:.3f} deg apart, "
                f"r={row['primary_correlation']:.4f}"
            )


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (see the module docs); save and return the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", help="also run REF's ingest")
    parser.add_argument("--cap-gib", type=float, default=6.0)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="run only these cases")
    parser.add_argument("--corpus", type=Path, help="keep the corpus in this folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--contour", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--poses-out", help=argparse.SUPPRESS)
    add_out_argument(parser, "bench_bad_input.json")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.contour, args.code, args.grid)
        return {}
    if args.poses_out:
        _poses_child(args.poses_out, args.code)
        return {}
    cap = int(args.cap_gib * _GIB)
    cases = [c for c in corpus() if not args.only or c.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.corpus or Path(tmp) / "corpus"
        folder.mkdir(parents=True, exist_ok=True)
        before = _checkout(args.before, Path(tmp) / "before") if args.before else None
        for case in cases:
            target = folder / f"{case.name.split('_contour_')[0]}.map"
            path = target if target.exists() else case.make(target)
            row = {"name": case.name, "kind": case.kind, "what": case.what}
            row.update(
                file_bytes=path.stat().st_size,
                announced_shape_xyz=list(case.shape),
                f32_bytes=4 * int(np.prod(case.shape)),
                contour=None if case.contour is None else repr(case.contour),
            )
            if before is not None:
                row["before"] = run_case(case, path, before, cap, args.grid)
            row["after"] = run_case(case, path, None, cap, args.grid)
            rows.append(row)
            print(f"{case.name}: {row['after']['outcome']}", file=sys.stderr)
        poses = sample_poses(before, Path(tmp))
    result = {
        "benchmark": "bad input: read_map + canonicalize_poses in a fresh child each",
        "command": "python -m benchmarks.bench_bad_input"
        + (f" --before {args.before}" if args.before else ""),
        "address_space_cap_gib": args.cap_gib,
        "grid": args.grid,
        "ratio": "(peak RSS - RSS after imports) / float32 size announced",
        "before_ref": args.before,
        "before_commit": _rev(args.before) if args.before else None,
        "after_commit": _rev("HEAD"),
        "after_uncommitted_changes": bool(
            subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "ingest"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        ),
        "cases": rows,
        "sample_poses": poses,
        "machine": machine_info(
            numpy=np.__version__, mem_total_gib=_mem_total() / _GIB
        ),
    }
    return save_result(result, args.out, print_table)


def _rev(ref: str) -> str:
    """The commit hash ``ref`` names."""
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    main()
