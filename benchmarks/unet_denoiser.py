"""A supervised 3D U-Net denoiser: the learned baseline of the denoising benchmark.

Trained on the encoder's training split (the groups that
:func:`encoder.training_data.dataset.split_of` puts in ``train``, as
``swan dataset build`` does), in map space rather than the canonical frame, so
that it denoises a map on its own grid: SIMULATED views of the training groups'
atomic models (:func:`ingest.simulate.simulate_view`, 3-12 Å), the training
groups' real maps low-pass filtered to 3-12 Å, and synthetic assemblies whose
group falls in the training split (4-12 Å). Every step draws random 32^3 crops
of those clean maps and adds Gaussian noise of 0.2-1.1 times the whole clean
map's standard deviation; the network (noisy map over its standard deviation
in, the noise out: DnCNN's residual form) learns the mean squared error to the
clean map. One torch thread and a fixed budget of CPU time (``--cpu-minutes``,
building the maps included; CPU time, not wall time, so that a machine shared
with other jobs does not shrink it), or of steps (``--steps``: the same network
on any machine, whatever its load, since the steps per CPU second vary with
it); a run stops early at ``--wall-minutes`` and the same command resumes it.
The file records the steps, CPU and wall seconds.

    $ python -m benchmarks.unet_denoiser --cpu-minutes 20 --out runs/unet_denoiser.pt
    $ python -m benchmarks.unet_denoiser --steps 4000 --out runs/unet_denoiser.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import SHARED_DATA
from encoder.training_data.dataset import DatasetConfig, group_of, lowpass, split_of

SHARED = SHARED_DATA
PATCH = 32


class UNet3D(nn.Module):
    """Two down-samplings, ``width`` channels at full size (x2, x4 below)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width

        def conv(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(a, b, 3, padding=1),
                nn.GroupNorm(4, b),
                nn.ReLU(inplace=True),
                nn.Conv3d(b, b, 3, padding=1),
                nn.ReLU(inplace=True),
            )

        self.e1, self.e2, self.e3 = conv(1, w), conv(w, 2 * w), conv(2 * w, 4 * w)
        self.u2 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.d2 = conv(4 * w, 2 * w)
        self.u1 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.d1 = conv(2 * w, w)
        self.out = nn.Conv3d(w, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Noisy ``[B, 1, Z, Y, X]`` (sides divisible by 4) -> denoised."""
        h1 = self.e1(x)
        h2 = self.e2(F.max_pool3d(h1, 2))
        h3 = self.e3(F.max_pool3d(h2, 2))
        h = self.d2(torch.cat([self.u2(h3), h2], 1))
        h = self.d1(torch.cat([self.u1(h), h1], 1))
        return x - self.out(h)


def training_maps(seed: int, synthetic: int) -> tuple[list[np.ndarray], list[str]]:
    """Clean maps ``[z, y, x]`` of the training split, and what each one is."""
    from encoder.training_data.synthetic import build_assembly, random_spec
    from ingest import read_map, read_model
    from ingest.simulate import simulate_map, simulate_view

    cfg = DatasetConfig(seed=seed)
    rng = np.random.default_rng(seed)
    maps, names = [], []
    for path in sorted((SHARED / "models").iterdir()):
        if split_of(group_of(path), "simulated", cfg) != "train":
            continue
        structure = read_model(path)
        for view in range(2):
            dmap, res = simulate_view(structure, rng)
            maps.append(dmap.data)
            names.append(f"SIMULATED {path.name} view {view} {res:.1f} A")
    for path in sorted((SHARED / "maps").iterdir()):
        if split_of(group_of(path), "real", cfg) != "train":
            continue
        dmap = read_map(path)
        res = float(rng.uniform(3.0, 12.0))
        maps.append(lowpass(dmap, res, None).data)
        names.append(f"{path.name} low-passed {res:.1f} A")
    i = 0
    while sum(n.startswith("synthetic") for n in names) < synthetic:
        group = f"synthetic-{seed}-{i}"
        if split_of(group, "synthetic", cfg) == "train":
            r = np.random.default_rng([seed, 7, i])
            res = float(r.uniform(4.0, 12.0))
            dmap = simulate_map(build_assembly(random_spec(r)), res, max(res / 3, 1.5))
            maps.append(dmap.data)
            names.append(f"synthetic {i} {res:.1f} A")
        i += 1
    return [np.asarray(m, np.float32) for m in maps], names


def _crop(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pad = [(0, max(0, PATCH - s)) for s in volume.shape]
    v = np.pad(volume, pad)
    lo = [int(rng.integers(0, s - PATCH + 1)) for s in v.shape]
    return v[lo[0] : lo[0] + PATCH, lo[1] : lo[1] + PATCH, lo[2] : lo[2] + PATCH]


def _maps(cache: Path, seed: int) -> tuple[list[np.ndarray], list[str], float]:
    """The training maps, built once and kept in ``cache`` (``.npz``), and the
    CPU seconds spent building them now (0 when read from the cache)."""
    if cache.is_file():
        with np.load(cache) as z:
            names = [str(n) for n in z["names"]]
            return [z[f"m{i}"] for i in range(len(names))], names, 0.0
    start = time.process_time()
    maps, names = training_maps(seed, synthetic=24)
    arrays = {f"m{i}": m for i, m in enumerate(maps)}
    np.savez(cache, names=np.array(names), **arrays)
    return maps, names, time.process_time() - start


def train(
    out: Path,
    cpu_minutes: float,
    wall_minutes: float,
    seed: int = 0,
    width: int = 16,
    batch: int = 4,
    max_steps: int | None = None,
) -> dict:
    """Train on one torch thread until the CPU time spent on the denoiser in
    all (building its maps included, over every resumed run) reaches
    ``cpu_minutes``, its steps in all reach ``max_steps`` (``None``: no step
    limit), or this run's wall time reaches ``wall_minutes``; resumes from
    ``out`` when it exists. Returns what is saved there."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    blob = torch.load(out, weights_only=True) if out.is_file() else None
    maps, names, built = _maps(out.with_suffix(".maps.npz"), seed)
    stds = [float(m.std()) or 1.0 for m in maps]
    net = UNet3D(width)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    step, cpu, wall, losses = 0, 0.0, 0.0, []
    if blob is not None:
        net.load_state_dict(blob["state"])
        opt.load_state_dict(blob["optimizer"])
        step, cpu, wall = blob["steps"], blob["cpu_seconds"], blob["wall_seconds"]
        built += blob["cpu_seconds_building_maps"]
    spent = cpu + time.process_time() - start_cpu
    while (
        spent < cpu_minutes * 60
        and (max_steps is None or step < max_steps)
        and time.perf_counter() - start_wall < wall_minutes * 60
    ):
        # each step's crops and noise from its own number: a resumed run takes
        # the steps an uninterrupted one would
        rng = np.random.default_rng([seed + 1, step])
        xs, ys = [], []
        for _ in range(batch):
            j = int(rng.integers(len(maps)))
            clean = _crop(maps[j], rng)
            level = float(rng.uniform(0.2, 1.1))
            noisy = clean + rng.normal(0, level * stds[j], clean.shape)
            scale = stds[j] * np.sqrt(1 + level**2)  # the noisy map's std
            xs.append(noisy / scale)
            ys.append(clean / scale)
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32))
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f}", flush=True)
        spent = cpu + time.process_time() - start_cpu
    return {
        "state": net.state_dict(),
        "optimizer": opt.state_dict(),
        "width": width,
        "steps": step,
        "cpu_seconds": spent,
        "wall_seconds": wall + time.perf_counter() - start_wall,
        "cpu_seconds_building_maps": built,
        "threads": 1,
        "cpu_minutes_budget": cpu_minutes,
        "steps_budget": max_steps,
        "batch": batch,
        "patch": PATCH,
        "last_loss": float(np.mean(losses[-100:])) if losses else None,
        "maps": names,
    }


def load(path: str | Path) -> tuple[UNet3D, dict[str, Any]]:
    """A trained denoiser and its record (without the weights).

    Raises:
        ValueError: no such file; train one with this module first.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"{path}: no U-Net denoiser there; train one with "
            f"python -m benchmarks.unet_denoiser --out {path}"
        )
    blob = torch.load(path, weights_only=True)
    net = UNet3D(blob["width"])
    net.load_state_dict(blob["state"])
    net.eval()
    return net, {k: v for k, v in blob.items() if k not in ("state", "optimizer")}


def denoise(net: UNet3D, data: np.ndarray) -> np.ndarray:
    """A noisy map ``[z, y, x]`` denoised on its own grid (float32)."""
    scale = float(data.std()) or 1.0
    pad = [(0, (-s) % 4) for s in data.shape]
    x = torch.from_numpy(np.pad(data / scale, pad, mode="reflect").astype(np.float32))
    with torch.no_grad():
        out = net(x[None, None])[0, 0].numpy()
    z, y, w = data.shape
    return (out[:z, :y, :w] * scale).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-minutes",
        type=float,
        default=None,
        help="CPU budget (default 20; no limit when --steps is given)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="step budget (default: none)"
    )
    parser.add_argument("--wall-minutes", type=float, default=60.0)
    parser.add_argument("--out", default="runs/unet_denoiser.pt")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cpu_minutes = args.cpu_minutes
    if cpu_minutes is None:
        cpu_minutes = float("inf") if args.steps else 20.0
    blob = train(
        out,
        cpu_minutes,
        args.wall_minutes,
        args.seed,
        args.width,
        max_steps=args.steps,
    )
    torch.save(blob, out)
    print(f"{out}: {blob['steps']} steps, {blob['cpu_seconds']:.0f} CPU s")


if __name__ == "__main__":
    main()
