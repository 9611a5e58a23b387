"""Make sure a Chromium is available for the browser tests, installing one if this machine allows.

Order: PASSGATE_CHROMIUM, then a system chromium (Debian's package), then Playwright's own download.
On Debian/Ubuntu as root, installs the `chromium` package when neither is present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find() -> str | None:
    explicit = os.environ.get("PASSGATE_CHROMIUM")
    if explicit and os.path.exists(explicit):
        return explicit
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def main() -> int:
    path = find()
    if path:
        print(f"browser tests: using {path}")
        return 0
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("browser tests: installing Debian's chromium (apt-get) …", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
        if done.returncode == 0 and find():
            print(f"browser tests: using {find()}")
            return 0
    print("browser tests: no system Chromium; trying `playwright install chromium` …", flush=True)
    done = subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"], check=False)
    if done.returncode != 0:
        print("browser tests: could not get a Chromium. Install one (e.g. `apt-get install chromium`) "
              "or set PASSGATE_CHROMIUM.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
