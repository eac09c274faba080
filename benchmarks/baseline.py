"""The code a benchmark compares against: the project as it was at a commit.

A speed-up is measured side by side with the code it replaces, in the same run
on the same machine. The replaced code lives in git history, not in a copy in
the tree: :func:`module_at` loads one module as it was at a commit (for code
called in-process, such as the rotational fit), :func:`export` writes the whole
tree as it was into a folder (for a server run in a subprocess with that folder
on its ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

from benchmarks.common import ROOT

#: The commit before the fit, connection and store-opening speed-ups.
BASELINE_COMMIT = "dc4a8c9e5b2ca534c304373cc87b8e1cc8752583"


def _git(*args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True
    ).stdout


def resolve(commit: str) -> str:
    """The full hash of ``commit`` (any name git knows)."""
    return _git("rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()


def module_at(commit: str, path: str, name: str) -> ModuleType:
    """The module of file ``path`` (relative to the repository) as it was at
    ``commit``, loaded under ``name`` (its imports resolve to today's code)."""
    source = _git("show", f"{resolve(commit)}:{path}").decode()
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = f"{path}@{commit[:12]}"
    sys.modules[name] = module  # dataclasses and pickling look modules up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102
    return module


def export(commit: str, folder: Path) -> Path:
    """Write the tree of ``commit`` into ``folder`` (created); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    data = _git("archive", "--format=tar", resolve(commit))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder
