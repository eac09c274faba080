"""One model's training steps, timed, in a process of its own (for
``benchmarks.bench_train_step``).

Run as a script with the tree to measure first on ``PYTHONPATH``; it imports
nothing from ``benchmarks``, so the same file drives today's code and the code
of an older commit. Arguments: dataset folder, arch, threads and optionally the
precision (``fp32``, or ``bf16`` for trees that have it; ``+compile`` after
it: the model's forward pass compiled by ``torch.compile``, inductor, with the
parts it cannot compile left as they are). It then reads one
JSON line per request on stdin, ``{"steps": k}``, runs k training steps and
answers one JSON line: the wall and CPU seconds of each step; ``{"profile":
true}`` runs one step under ``torch.profiler`` and answers the operators that
took the time.
"""

from __future__ import annotations

import json
import sys
import time

import torch


def _step_functions():  # noqa: ANN202
    """(make_optimizer, train_step) of the tree on the path; trees from before
    ``encoder.train.train_step`` existed get their loop body, as it was."""
    try:
        from encoder.train import make_optimizer, train_step
    except ImportError:

        def make_optimizer(model, cfg):  # noqa: ANN001, ANN202
            return torch.optim.AdamW(
                model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )

        def train_step(model, opt, x):  # noqa: ANN001, ANN202
            out = model(x)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return out

    return make_optimizer, train_step


def profile_step(model, opt, x, train_step, top: int = 15) -> dict:  # noqa: ANN001
    """One step under ``torch.profiler``: self CPU time per operator."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, opt, x)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return {
        "total_ms": round(total / 1e3, 1),
        "ops": len(events),
        "calls": sum(e.count for e in events),
        "top": [
            {
                "op": e.key,
                "calls": e.count,
                "self_ms": round(e.self_cpu_time_total / 1e3, 1),
                "share": round(e.self_cpu_time_total / total, 4),
            }
            for e in events[:top]
        ],
    }


def main() -> None:
    from encoder.model import CryoSwanConfig
    from encoder.train import RunConfig, build_model
    from encoder.training_data.dataset import load_split

    dataset, arch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    precision, _, compile_ = precision.partition("+")
    torch.set_num_threads(threads)
    cfg = RunConfig()  # the default batch size and learning rate
    train_set = torch.from_numpy(load_split(dataset, "train"))
    grid = int(train_set.shape[-1])
    model_cfg = CryoSwanConfig()
    model_cfg = model_cfg.for_grid(grid) if model_cfg.grid != grid else model_cfg
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batches = [
        train_set[torch.randint(0, len(train_set), (cfg.batch_size,), generator=gen)]
        .float()
        .div_(255)
        .unsqueeze(1)
        for _ in range(4)
    ]
    del train_set
    model = build_model(arch, model_cfg).train()
    make_optimizer, step_function = _step_functions()
    forward = model
    if compile_:
        from torch import _dynamo

        _dynamo.config.suppress_errors = True
        forward = torch.compile(model)  # shares the model's parameters

    def train_step(model, opt, x):  # noqa: ANN001, ANN202
        if precision == "fp32":  # (trees before --precision take no argument)
            return step_function(model, opt, x)
        return step_function(model, opt, x, precision)

    opt = make_optimizer(model, cfg)
    model = forward  # the steps run the compiled forward when asked
    print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
    done = 0
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("profile"):
            x = batches[done % len(batches)]
            done += 1
            print(json.dumps(profile_step(model, opt, x, train_step)), flush=True)
            continue
        wall, cpu = [], []
        for _ in range(int(request["steps"])):
            x = batches[done % len(batches)]
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(model, opt, x)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            done += 1
        print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()
