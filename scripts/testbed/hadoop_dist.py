"""Local, cached Apache Hadoop 2.7.3 jars for the HDFS test bed.

The jars come from the PyPI sdist of ``pyspark==2.4.8``, which ships the official Hadoop 2.7.3
jars in ``deps/jars/``. Only those jars are extracted, into ``.cache/hadoop-2.7.3/jars/``,
together with the empty ``webapps/*`` directories Hadoop's HTTP server looks up on the
classpath. Every step is a no-op once done (a marker file), and every write goes through a
temporary path and a rename so an interrupted run never leaves a half cache behind.

WebHDFS on the NameNode needs Jersey 1, which Spark does not ship: it comes from Debian's
``libjersey1-server-java``/``libjersey1-servlet-java`` (see ``scripts/system_deps.sh``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HADOOP_VERSION = "2.7.3"
PYSPARK_VERSION = "2.4.8"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("HDFS_TESTBED_CACHE", REPO_ROOT / ".cache"))
SDIST_NAME = f"pyspark-{PYSPARK_VERSION}.tar.gz"
MARKER = ".complete"
WEBAPPS = ("hdfs", "datanode", "static", "secondary", "journal")

# Jersey 1 (WebHDFS) from Debian; jsr311-api is the JAX-RS 1.1 API it implements.
SYSTEM_JAR_DIR = Path("/usr/share/java")
SYSTEM_JARS = ("jersey1-core.jar", "jersey1-server.jar", "jersey1-servlet.jar", "jsr311-api.jar")

# Jars of the sdist kept off the classpath: Spark's Jersey 2 / JAX-RS 2 stack (it shadows
# Jersey 1 and breaks WebHDFS) and Spark/Scala/other jars the HDFS daemons never use.
_EXCLUDED_PREFIXES = (
    "jersey-",
    "hk2-",
    "javax.ws.rs-api-",
    "javax.inject-",
    "aopalliance-repackaged-",
    "osgi-resource-locator-",
    "validation-api-",
    "spark-",
    "scala-",
    "hive-",
    "parquet-",
    "orc-",
    "arrow-",
    "mesos-",
    "kubernetes-",
    "breeze",
    "json4s-",
    "py4j-",
    "pyrolite-",
    "datanucleus-",
    "calcite-",
    "derby-",
)


class HadoopDistError(RuntimeError):
    """The Hadoop jars could not be made available."""


def hadoop_home(cache_dir: Path = CACHE_DIR) -> Path:
    """Directory of the extracted distribution (``jars/`` and ``webapps/`` inside)."""
    return cache_dir / f"hadoop-{HADOOP_VERSION}"


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Serialise cache writers (several test processes may start at once)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".hadoop-{HADOOP_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sdist_ok(path: Path) -> bool:
    """True when ``path`` is a complete gzip tarball (a cheap check: it has the Hadoop jar)."""
    if not path.is_file() or path.stat().st_size < 100_000_000:
        return False
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name.endswith(f"/deps/jars/hadoop-hdfs-{HADOOP_VERSION}.jar"):
                    return True
    except (tarfile.TarError, OSError, EOFError):
        return False
    return False


def ensure_sdist(cache_dir: Path = CACHE_DIR) -> Path:
    """Return the pyspark sdist, downloading it with this interpreter's pip when missing."""
    downloads = cache_dir / "downloads"
    target = downloads / SDIST_NAME
    if target.is_file():
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pyspark-dl-", dir=downloads) as tmp:
        constraint = Path(tmp) / "constraints.txt"
        constraint.write_text("pypandoc<1.8\n")
        # The sdist's setup.py calls pypandoc.convert (gone in 1.8) while pip prepares its
        # metadata. pip < 25.3 applies PIP_CONSTRAINT to build environments; newer pips
        # need PIP_BUILD_CONSTRAINT (older ones ignore it).
        env = dict(os.environ, PIP_CONSTRAINT=str(constraint), PIP_BUILD_CONSTRAINT=str(constraint))
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "-q", "-d", tmp, f"pyspark=={PYSPARK_VERSION}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        got = Path(tmp) / SDIST_NAME
        if proc.returncode != 0 or not got.is_file():
            raise HadoopDistError(
                f"pip download of pyspark=={PYSPARK_VERSION} failed ({proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        os.replace(got, target)
    return target


def _extract(sdist: Path, home: Path) -> None:
    """Extract ``deps/jars/*.jar`` of ``sdist`` into ``home/jars`` atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
    try:
        jars = tmp / "jars"
        jars.mkdir()
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 4 and parts[1:3] == ["deps", "jars"] and parts[3].endswith(".jar"):
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    with src, open(jars / parts[3], "wb") as dst:
                        shutil.copyfileobj(src, dst)
        if not (jars / f"hadoop-hdfs-{HADOOP_VERSION}.jar").is_file():
            raise HadoopDistError(f"{sdist} has no hadoop-hdfs-{HADOOP_VERSION}.jar")
        for app in WEBAPPS:
            (tmp / "webapps" / app).mkdir(parents=True)
        (tmp / MARKER).write_text(f"hadoop {HADOOP_VERSION} from {sdist.name}\n")
        if home.exists():  # an incomplete leftover (no marker)
            shutil.rmtree(home)
        os.replace(tmp, home)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_hadoop(cache_dir: Path = CACHE_DIR) -> Path:
    """Make sure the Hadoop jars are extracted; return the distribution directory.

    Downloads the pyspark sdist first if needed (~220 MB, once per machine). Safe to call
    from several processes at once.
    """
    home = hadoop_home(cache_dir)
    if (home / MARKER).is_file():
        return home
    with _locked(cache_dir):
        if (home / MARKER).is_file():
            return home
        # leftovers of runs killed mid-way (we hold the lock: nobody else is writing)
        for junk in [*cache_dir.glob(f".{home.name}-*"), *cache_dir.glob("downloads/.pyspark-dl-*")]:
            shutil.rmtree(junk, ignore_errors=True)
        sdist = ensure_sdist(cache_dir)
        try:
            _extract(sdist, home)
        except (tarfile.TarError, EOFError, OSError, HadoopDistError):
            if _sdist_ok(sdist):
                raise
            sdist.unlink()  # a corrupt download: fetch once more
            _extract(ensure_sdist(cache_dir), home)
    return home


def missing_system_jars() -> list[Path]:
    """Debian Jersey 1 jars that are not installed (empty when all present)."""
    return [SYSTEM_JAR_DIR / name for name in SYSTEM_JARS if not (SYSTEM_JAR_DIR / name).is_file()]


def _wanted(jar: Path) -> bool:
    return jar.suffix == ".jar" and not jar.name.startswith(_EXCLUDED_PREFIXES)


def classpath(conf_dir: Path | None = None, cache_dir: Path = CACHE_DIR) -> str:
    """The HDFS daemons' classpath: conf dir, Hadoop home (webapps/), Jersey 1, Hadoop jars.

    Raises ``HadoopDistError`` when the Debian Jersey 1 jars are missing.
    """
    home = ensure_hadoop(cache_dir)
    missing = missing_system_jars()
    if missing:
        raise HadoopDistError(f"missing {', '.join(map(str, missing))}: run `bash scripts/system_deps.sh`")
    entries: list[str] = []
    if conf_dir is not None:
        entries.append(str(conf_dir))
    entries.append(str(home))  # webapps/hdfs, webapps/datanode, ... are looked up as resources
    entries += [str(SYSTEM_JAR_DIR / name) for name in SYSTEM_JARS]
    entries += sorted(str(j) for j in (home / "jars").iterdir() if _wanted(j))
    return os.pathsep.join(entries)


def main() -> int:
    """CLI: ensure the jars, print the distribution directory."""
    print(ensure_hadoop())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
