"""Install axe-core (the accessibility rules the console's browser tests inject into each page) from npm
into .cache/axe/, a git-ignored folder. Nothing of axe is kept in the repository.

`python scripts/ensure_axe.py` prints the path of axe.min.js; the browser tests call `ensure()` too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = ROOT / ".cache" / "axe"
AXE = PREFIX / "node_modules" / "axe-core" / "axe.min.js"
SPEC = "axe-core@4"


def ensure() -> Path | None:
    if AXE.exists():
        return AXE
    npm = shutil.which("npm")
    if npm is None:
        print("accessibility tests: npm is not installed (Node.js 18+ is needed)", file=sys.stderr)
        return None
    PREFIX.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(PREFIX), "--no-save", "--no-audit", "--no-fund", "--silent", SPEC],
        check=False,
    )
    if done.returncode != 0 or not AXE.exists():
        print(f"accessibility tests: `npm install {SPEC}` failed", file=sys.stderr)
        return None
    return AXE


def main() -> int:
    found = ensure()
    if found is None:
        return 1
    print(f"accessibility tests: using {found}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
