"""What every benchmark records next to its figures, and how it saves them."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def code_version() -> dict[str, str]:
    """sha256 (first 12 hex digits) of the store's sources, to tell which version
    of the code a result measured."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in sorted((ROOT / "swan_index").glob("*.py"))
    }


def machine_info(**versions: Any) -> dict[str, Any]:
    """Python, platform, CPU count, plus the library ``versions`` given."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **versions,
    }


def save_result(
    result: dict[str, Any],
    out: Path,
    print_table: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write ``result`` as JSON to ``out``, print its table, say where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if print_table is not None:
        print_table(result)
    print(f"\nsaved {out}")
    return result
