"""Scratch installs of the built package on a plain Airflow: what each extra adds, and a worker venv.

Everything a user would do with pip, in throwaway venvs of this interpreter's Python:

* :func:`build_dists` builds the sdist and the wheel from the working tree (``python -m build
  --no-isolation``: ``build`` and ``hatchling`` come with the ``dev`` extra);
* :func:`base_venv` is a venv with only ``apache-airflow==<the dev venv's version>``, cached under
  ``.cache/install-bed/`` (built once, under a lock);
* :func:`extra_venv` copies it and pip-installs ``<wheel>[<extras>]`` on top;
  :func:`worker_venv` keeps such a venv under ``.cache/install-bed/`` keyed by the wheel's
  requirements, so a warm run only reinstalls the package itself;
* :func:`site_bytes`, :func:`freeze` and :func:`changed` say what an install added and which of
  Airflow's own dependencies it moved.

Pip runs with this machine's pip configuration (index, constraints), like a user's install would.
Logs go to ``<venv>/install.log``.

Command line (the sizes in the README's Install section)::

    python -m scripts.testbed.install_bed measure [--wheel dist/x.whl] [--extras hdfs,docker,mlflow]

prints one JSON row per extra: MiB added to site-packages on top of the plain Airflow (the provider
itself included, 1.4 MiB), the distributions added and Airflow's dependencies it moved.

Measured on a 2-CPU VM with a warm pip cache: base venv ~35 s (286 MiB), ``[mlflow]`` on top of a
copy 25-65 s, ``measure`` of the six extras 4-10 min. ``.cache/install-bed/`` holds about 1.3 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from scripts.testbed import ROOT
from scripts.testbed.docker_bed import _lock

CACHE = ROOT / ".cache" / "install-bed"
DEFAULT_EXTRAS = ("hdfs", "docker", "metronome", "spark", "mlflow", "all")
PIP_TIMEOUT = 1800.0


class InstallBedError(RuntimeError):
    """A build or an install failed (the message carries the log's tail)."""


def airflow_version() -> str:
    """The Airflow release of the running (dev) venv, which scratch venvs install too."""
    return metadata.version("apache-airflow")


def _run(cmd: list[str], log: Path, what: str, cwd: Path | None = None, timeout: float = PIP_TIMEOUT) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise InstallBedError(f"{what} failed (exit {done.returncode}); see {log}:\n{tail}")


def build_dists(out_dir: Path, source: Path = ROOT) -> tuple[Path, Path]:
    """Build ``source``'s sdist and wheel into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out_dir), str(source)]
    _run(cmd, out_dir / "build.log", f"building {source}")
    (sdist,) = sorted(out_dir.glob("*.tar.gz"))
    (wheel,) = sorted(out_dir.glob("*.whl"))
    return sdist, wheel


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip(venv: Path, *args: str) -> None:
    cmd = [str(python_of(venv)), "-m", "pip", "install", "--disable-pip-version-check", *args]
    _run(cmd, venv / "install.log", f"pip install into {venv}")


def base_venv() -> Path:
    """The cached venv with only ``apache-airflow==<airflow_version()>`` (built if missing)."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = CACHE / f"airflow-{airflow_version()}-py{py}"
    with _lock("install-bed-base"):
        if not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            venv.mkdir(parents=True)
            _run([sys.executable, "-m", "venv", str(venv)], venv / "install.log", f"creating {venv}")
            _pip(venv, f"apache-airflow=={airflow_version()}")
            (venv / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return venv


def copy_venv(src: Path, dest: Path) -> Path:
    """Copy venv ``src`` to ``dest``; its scripts' ``#!`` lines then name ``dest``'s interpreter."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, symlinks=True)
    (dest / ".complete").unlink(missing_ok=True)
    old, new = f"#!{src}/bin/".encode(), f"#!{dest}/bin/".encode()
    for script in (dest / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(old):
                script.write_bytes(new + data[len(old) :])
    return dest


def extra_venv(wheel: Path, extras: str, dest: Path) -> Path:
    """A copy of :func:`base_venv` at ``dest`` with ``<wheel>[<extras>]`` installed (``extras`` may be empty)."""
    copy_venv(base_venv(), dest)
    spec = f"{wheel}[{extras}]" if extras else str(wheel)
    _pip(dest, f"apache-airflow=={airflow_version()}", spec)
    return dest


def wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of ``wheel``'s METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return sorted(meta.get_all("Requires-Dist") or [])


def worker_venv(wheel: Path, extras: str) -> Path:
    """A cached :func:`extra_venv` for ``extras``; the package itself is reinstalled from ``wheel``.

    Cached under ``.cache/install-bed/`` by the wheel's requirements, so changing an extra gives a
    new venv (older ones of the same extras are removed) and a warm run takes a few seconds.
    """
    key = hashlib.sha256(json.dumps([airflow_version(), sys.version, wheel_requirements(wheel)]).encode())
    name = f"{extras.replace(',', '-') or 'none'}-"
    venv = CACHE / f"{name}{key.hexdigest()[:12]}"
    with _lock(f"install-bed-{name}"):
        if not (venv / ".complete").is_file():
            for old in CACHE.glob(f"{name}*"):
                shutil.rmtree(old, ignore_errors=True)
            extra_venv(wheel, extras, venv)
            (venv / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        _pip(venv, "--no-deps", "--force-reinstall", str(wheel))
    return venv


def site_bytes(venv: Path) -> int:
    """Disk usage of ``venv``'s site-packages (allocated blocks, like ``du``)."""
    total = 0
    for sp in (venv / "lib").glob("python*/site-packages"):
        for dirpath, _dirs, files in os.walk(sp):
            for f in files:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def freeze(venv: Path) -> dict[str, str]:
    """``{normalized name: version}`` of every distribution installed in ``venv``."""
    code = (
        "import json, re\nfrom importlib import metadata\n"
        "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
        "for d in metadata.distributions()}))"
    )
    out = subprocess.run([str(python_of(venv)), "-c", code], capture_output=True, text=True, check=True)
    found: dict[str, str] = json.loads(out.stdout)
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    """``{name: (old, new)}`` for each distribution of ``before`` whose version differs in ``after``."""
    return {n: (v, after.get(n, "removed")) for n, v in sorted(before.items()) if after.get(n) != v}


def _measure(wheel: Path, extras: list[str], work: Path) -> list[dict[str, object]]:
    base = base_venv()
    base_size, base_freeze = site_bytes(base), freeze(base)
    rows: list[dict[str, object]] = []
    for extra in extras:
        t0 = time.monotonic()
        venv = extra_venv(wheel, extra, work / f"venv-{extra}")
        after = freeze(venv)
        rows.append(
            {
                "extra": extra,
                "added_mib": round((site_bytes(venv) - base_size) / 2**20, 1),
                "added": sorted(set(after) - set(base_freeze) - {"airflow-ml-provider"}),
                "changed": {n: f"{a} -> {b}" for n, (a, b) in changed(base_freeze, after).items()},
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        shutil.rmtree(venv, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What each extra installs on top of a plain Airflow.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="install each extra into a copy of the plain-Airflow venv; print JSON rows")
    m.add_argument("--wheel", type=Path, help="the wheel to install (default: build one from the working tree)")
    m.add_argument("--extras", default=",".join(DEFAULT_EXTRAS), help="comma-separated extras, one venv each")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="install-bed-") as tmp:
        wheel = args.wheel.resolve() if args.wheel else build_dists(Path(tmp) / "dist")[1]
        try:
            rows = _measure(wheel, [e for e in args.extras.split(",") if e], Path(tmp))
        except InstallBedError as e:
            print(f"install_bed: {e}", file=sys.stderr)
            return 1
    base_mib = round(site_bytes(base_venv()) / 2**20, 1)
    print(json.dumps({"airflow": airflow_version(), "base_mib": base_mib, "wheel": wheel.name, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
