"""Check (and with --fix, repair) that the installed pyspark is one consistent release.

The apache-spark provider depends on ``pyspark-client``, which installs into the same
``pyspark/`` folder as ``pyspark``: installed in the wrong order or at another version it
silently overwrites pyspark's Python files, leaving Python code of one release driving the JVM
jars of another while ``pip check`` stays quiet. This compares the three version sources:
the ``pyspark`` distribution's metadata, ``pyspark.__version__`` and the ``spark-core`` jar.

Exit 0 when consistent; 1 otherwise (after --fix: when the repair did not help).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import metadata


def versions() -> dict[str, str | None]:
    """The pyspark version according to each source, in a fresh interpreter."""
    code = (
        "import json, pathlib, re, pyspark\n"
        "jars = pathlib.Path(pyspark.__file__).parent / 'jars'\n"
        "core = sorted(jars.glob('spark-core_*.jar'))\n"
        "m = re.search(r'spark-core_[0-9.]+-([0-9][^/]*)\\.jar$', core[0].name) if core else None\n"
        "print(json.dumps({'module': pyspark.__version__, 'jar': m.group(1) if m else None}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    found: dict[str, str | None] = json.loads(out.strip().splitlines()[-1])
    try:
        found["dist"] = metadata.version("pyspark")
    except metadata.PackageNotFoundError:
        found["dist"] = None
    try:
        found["client_dist"] = metadata.version("pyspark-client")
    except metadata.PackageNotFoundError:
        found["client_dist"] = None
    return found


def consistent(found: dict[str, str | None]) -> bool:
    """True when module, jar and distribution agree (and pyspark-client, if present, too)."""
    core = {found["module"], found["jar"], found["dist"]}
    return None not in core and len(core) == 1 and found["client_dist"] in (None, found["dist"])


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fix", action="store_true", help="reinstall pyspark over pyspark-client if needed")
    args = parser.parse_args()
    found = versions()
    if consistent(found):
        print(f"pyspark consistent: {found}")
        return 0
    print(f"pyspark INCONSISTENT: {found}", file=sys.stderr)
    if not args.fix or not found["dist"]:
        return 1
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--force-reinstall",
            "--no-deps",
            f"pyspark=={found['dist']}",
        ],
        check=True,
    )
    found = versions()
    print(f"after reinstall: {found}")
    return 0 if consistent(found) else 1


if __name__ == "__main__":
    sys.exit(main())
