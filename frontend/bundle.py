"""Keep frontend/dist/patchbay.js in step with frontend/src and package-lock.json.

`python frontend/bundle.py --check` exits 1 when the committed bundle is stale (no Node needed);
`python frontend/bundle.py --ensure` rebuilds it with `npm ci` and esbuild when it is stale,
and does nothing otherwise, so `make run` on a fresh clone needs no Node at all.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

FRONTEND = Path(__file__).resolve().parent
BUNDLE = FRONTEND / "dist" / "patchbay.js"
BANNER = re.compile(r"/\* patchbay bundle, sources ([0-9a-f]{64}) \*/")


def source_hash() -> str:
    """The same digest as source-hash.mjs: sha256 over each input's name and bytes."""
    names = sorted(f"src/{path.name}" for path in (FRONTEND / "src").glob("*.js"))
    digest = hashlib.sha256()
    for name in [*names, "package-lock.json"]:
        digest.update(name.encode() + b"\0" + (FRONTEND / name).read_bytes() + b"\0")
    return digest.hexdigest()


def bundled_hash() -> str | None:
    if not BUNDLE.exists():
        return None
    match = BANNER.search(BUNDLE.read_text(encoding="utf-8")[:200])
    return match.group(1) if match else None


def is_fresh() -> bool:
    return bundled_hash() == source_hash()


def rebuild() -> None:
    if shutil.which("npm") is None:
        sys.exit("frontend/dist/patchbay.js is stale and npm is not installed: install Node.js "
                 "and npm, then run `make frontend`.")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
    subprocess.run(["node", "build.mjs"], cwd=FRONTEND, check=True)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        if is_fresh():
            return 0
        print("frontend/dist/patchbay.js is stale: run `make frontend` and commit it.")
        return 1
    if argv[1:] == ["--ensure"]:
        if not is_fresh():
            rebuild()
        return 0
    print("usage: bundle.py --check | --ensure")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
