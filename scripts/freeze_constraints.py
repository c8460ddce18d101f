"""Freeze a virtual environment into a constraints file of exact versions.

Run by ``make constraints-refresh``:

    python scripts/freeze_constraints.py VENV OUT LABEL

The CPU build's local label (``+cpu``) is dropped, so the same file pins a GPU machine's torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

venv, out, label = sys.argv[1:4]
frozen = subprocess.run([str(Path(venv) / "bin" / "pip"), "freeze", "--exclude-editable"],
                        check=True, capture_output=True, text=True).stdout.splitlines()
lines = [
    f"# Exact versions CI and `make setup` install ({label} environment).",
    "# Refresh on purpose, in a commit of its own, with the full CI green:",
    "# make constraints-refresh",
    *(line.removesuffix("+cpu") for line in frozen if line and not line.startswith("#")),
]
Path(out).write_text("\n".join(lines) + "\n")
print(f"{out}: {len(lines) - 2} packages")
