"""The README's Python example runs as written, from a fresh folder."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def _python_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path):
    (tmp_path / "data").symlink_to(ROOT / "data")
    script = tmp_path / "example.py"
    script.write_text(_python_example(), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("IngestSummary(") or "ok" in lines[0], lines[0]
    assert lines[1].startswith("1 EMD-5625 ")  # a stored map finds itself first
    assert lines[-1].startswith("map ['EMD-1832'")  # its file read again
    assert (tmp_path / "runs" / "example.swan" / "swan.duckdb").exists()


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 200
