"""How far the prior's route to denoising can go with this encoder: ceilings
for ``python -m benchmarks.bench_denoise --ceilings``.

``swan denoise`` draws the noisy map's code from the prior, decodes it and
makes the decoded map consistent with the noisy map
(:func:`swan_index.generate.consistent_on_input_grid`). Each ceiling below
replaces the decoded map by a better one, made consistent with the noisy map
the same way, so that the rows say which part limits the result:

* ``clean canonical volume``: the clean map's own canonical volume (what a
  perfect encoder and decoder would give): the canonical representation's
  ceiling (it cuts the density at the contour and clips it at its 99th
  percentile);
* ``the clean map's code``: the encoder's code of the *clean* map, decoded:
  what a prior that recovered the clean map's code from the noisy one exactly
  would give, the target of the prior's draw;
* ``decoder fitted to the clean map``: the decoder's continuous input (the
  summed quantized latent, as the decoder reads it) fitted to the clean
  canonical volume by gradient descent from the clean map's code
  (:data:`FIT_STEPS` Adam steps): what the decoder can draw when the code is
  not the encoder's;
* ``decoder fitted to the noisy map``: the same fit from the prior's draw to
  the *noisy* map's canonical volume (:data:`NOISY_FIT_STEPS` steps): whether
  fitting the decoder to the data finds that better map (it needs no clean
  copy; it is not a ceiling).

The first three use the clean map, which no user has: they are bounds, never
methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from encoder.model import to_surface
from encoder.prior import sample
from ingest.mapio import DensityMap
from swan_index.generate import Generator, consistent_on_input_grid

#: Adam steps of the decoder's input fitted to the clean canonical volume...
FIT_STEPS = 100
#: ...and to the noisy one (more steps fit more of the noise).
NOISY_FIT_STEPS = 30
#: Adam's learning rate for both fits.
FIT_LR = 0.05


def _decode(gen: Generator, latent: torch.Tensor) -> np.ndarray:
    """A canonical volume from the decoder's input, as the full code's is
    decoded (:meth:`encoder.model.CryoSwan.decode_indices`)."""
    model = gen.encoder
    with torch.no_grad():
        out = model.decoder(latent, len(model.config.scales))
        return to_surface(out, model.surface_level)[0, 0].clamp(0, 1).numpy()


def _fit(gen: Generator, target: np.ndarray, start: torch.Tensor, steps: int):
    """The decoder's input fitted to ``target`` (a canonical volume) by mean
    squared error, ``steps`` Adam steps from ``start``; the weights stay."""
    model = gen.encoder
    latent = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=FIT_LR)
    want = torch.from_numpy(np.asarray(target, np.float32))[None]
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            opt.zero_grad()
            out = model.decoder(latent, len(model.config.scales))[:, 0]
            loss = ((out - want) ** 2).mean()
            loss.backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return latent.detach()


def _code_latent(gen: Generator, values: np.ndarray) -> torch.Tensor:
    """The decoder's input for the encoder's code of a canonical volume."""
    model = gen.encoder
    x = torch.from_numpy(np.asarray(values, np.float32))[None, None]
    with torch.no_grad():
        f, _ = model.encode_latent(x)
        return model._quantize(f)[2]


def _drawn_latent(gen: Generator, values: np.ndarray, strength: float) -> torch.Tensor:
    """The decoder's input for the prior's draw from a canonical volume (one
    draw, seed 0, as ``swan denoise`` draws)."""
    model = gen.encoder
    x = torch.from_numpy(np.asarray(values, np.float32))[None, None]
    with torch.no_grad():
        f, _ = model.encode_latent(x)
        tokens = sample(
            gen.prior,
            model,
            1,
            start=f,
            strength=strength,
            generator=torch.Generator().manual_seed(0),
        )
        return model.cumulative_latents(tokens)[-1]


def ceiling_maps(
    gen: Generator,
    truth: DensityMap,
    noisy: DensityMap,
    cv: Any,
    contour: float,
    strength: float,
) -> dict[str, np.ndarray]:
    """Each ceiling (module docstring) made consistent with ``noisy``, on its
    grid: ``{label: map}``. ``cv``: the noisy map's canonical volume."""
    clean = gen.canonical(truth, contour)
    code = _code_latent(gen, clean.values)
    volumes = {
        "ceiling: clean canonical volume + data": (clean.values, clean),
        "ceiling: the clean map's code + data": (_decode(gen, code), clean),
        "ceiling: decoder fitted to the clean map + data": (
            _decode(gen, _fit(gen, clean.values, code, FIT_STEPS)),
            clean,
        ),
        "decoder fitted to the noisy map + data": (
            _decode(
                gen,
                _fit(
                    gen,
                    cv.values,
                    _drawn_latent(gen, cv.values, strength),
                    NOISY_FIT_STEPS,
                ),
            ),
            cv,
        ),
    }
    return {
        label: consistent_on_input_grid(volume, frame, noisy)
        for label, (volume, frame) in volumes.items()
    }
