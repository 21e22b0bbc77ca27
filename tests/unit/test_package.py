"""Package-level contracts: cheap imports, complete provider info."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from airflow.sdk import Connection

import airflow_ml_provider
from airflow_ml_provider.provider_info import get_provider_info

HEAVY = ("hdfs", "docker", "mlflow", "pyspark", "pandas", "pyarrow", "requests", "lightgbm", "sklearn")
KINDS = ("hooks", "operators", "sensors", "triggers")


def _modules(kind: str) -> list[str]:
    pkg = importlib.import_module(f"airflow_ml_provider.{kind}")
    return sorted(f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__))


def test_importing_every_module_pulls_in_no_heavy_library() -> None:
    """In a fresh interpreter, as the DAG processor would."""
    modules = [m for kind in (*KINDS, "backends", "utils", "storage", "scoring", "serving") for m in _modules(kind)] + [
        "airflow_ml_provider.provider_info"
    ]
    code = (
        "import sys, json, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_provider_info_lists_every_module_and_class() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-ml-provider"
    assert info["versions"] == [airflow_ml_provider.__version__]
    for kind in ("hooks", "sensors", "triggers", "operators"):
        listed = sorted(m for entry in info.get(kind, []) for m in entry["python-modules"])
        assert listed == _modules(kind), kind
    for ct in info["connection-types"]:
        module, _, cls = ct["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == ct["connection-type"]
        assert ct["connection-type"] not in ("http", "webhdfs", "docker", "hdfs")
        for name, field in ct["conn-fields"].items():
            assert field["label"], name
            assert "type" in field["schema"], name
        assert set(ct["ui-field-behaviour"]) == {"hidden-fields", "relabeling", "placeholders"}


# -- provider metadata: what the Providers page and the connection forms show ------------------------------


def test_every_listed_hook_class_and_module_exists_and_names_match() -> None:
    info = get_provider_info()
    listed = {m for kind in KINDS for entry in info.get(kind, []) for m in entry["python-modules"]}
    for module in sorted(listed):
        importlib.import_module(module)
    names = []
    for ct in info["connection-types"]:
        module, _, cls = ct["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.hook_name == ct["hook-name"], ct["connection-type"]
        names.append(ct["hook-name"])
    # one pattern for every type, so the form's (alphabetical) type list shows ours together
    assert all(n.startswith("ML provider: ") for n in names), names
    assert len(set(names)) == len(names)


def test_every_connection_field_has_a_label_and_a_description() -> None:
    for ct in get_provider_info()["connection-types"]:
        for name, field in ct["conn-fields"].items():
            where = f"{ct['connection-type']}.{name}"
            assert field.get("label"), where
            assert field.get("description"), where
            assert not field["description"].endswith(".."), where
            assert "null" in field["schema"]["type"], where  # a cleared field is saved as null


def test_no_placeholder_suggests_a_default_the_hook_does_not_apply() -> None:
    """The MLflow form showed port 5000, but the hook adds a port only when one is given."""
    from airflow_ml_provider.hooks.mlflow import mlflow_config_from_connection

    (ct,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "ml_mlflow"]
    assert "port" not in ct["ui-field-behaviour"]["placeholders"]
    conn = Connection(conn_id="m", conn_type="ml_mlflow", host="http://mlflow.corp")
    assert mlflow_config_from_connection(conn).tracking_uri == "http://mlflow.corp"


def test_descriptions_list_only_what_exists() -> None:
    description = get_provider_info()["description"]
    built_parts = ("HDFS", "Docker", "Swarm", "Metronome", "MLflow", "batch prediction", "ERP writer", "PostgreSQL")
    for built in (*built_parts, "MariaDB", "MySQL", "SQLite", "data report (EDA)", "SQL ingest", "Spark training"):
        assert built.lower() in description.lower(), built


def test_documentation_url_is_the_distributions_documentation_url() -> None:
    """Airflow 3.2+ takes the Providers page's link from the distribution's ``Project-URL:
    Documentation``; get_provider_info gives the same URL, so both agree on every Airflow."""
    from importlib import metadata

    info = get_provider_info()
    assert "documentation-url" in info
    urls = metadata.distribution("airflow-ml-provider").metadata.get_all("Project-URL") or []
    declared = [u.split(",", 1)[1].strip() for u in urls if u.split(",", 1)[0].strip().lower() == "documentation"]
    assert info["documentation-url"] == (declared[0] if declared else None)


def test_documentation_url_is_set() -> None:
    assert str(get_provider_info()["documentation-url"]).startswith("https://")


# -- every optional import goes through requires_extra -------------------------------------------------------

#: The module an extra installs -> that extra (pandas, pyarrow and numpy come with mlflow).
OPTIONAL = {"hdfs": "hdfs", "docker": "docker", "mlflow": "mlflow", "pyspark": "spark"} | dict.fromkeys(
    ("pandas", "pyarrow", "numpy"), "mlflow"
)
#: Modules whose extra is not their package's: HdfsCLI's Kerberos client needs the kerberos extra.
OPTIONAL_SUBMODULES = {"hdfs.ext.kerberos": "kerberos"}


def _extra_of(module: str) -> str:
    return OPTIONAL_SUBMODULES.get(module) or OPTIONAL[module.split(".")[0]]


def _unguarded_imports(tree: ast.AST) -> list[tuple[int, str, str | None]]:
    """(line, module, extra of the enclosing requires_extra or None) of each run-time optional import."""
    found: list[tuple[int, str, str | None]] = []

    def visit(node: ast.AST, guard: str | None, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            g, tc = guard, type_checking
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                tc = True
            if isinstance(child, ast.With):
                for item in child.items:
                    expr = item.context_expr
                    if isinstance(expr, ast.Call) and ast.unparse(expr.func) == "requires_extra":
                        g = ast.literal_eval(expr.args[0])
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not tc:
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                for name in names:
                    if name.split(".")[0] in OPTIONAL:
                        found.append((child.lineno, name, g))
            visit(child, g, tc)

    visit(tree, None, False)
    return found


def test_every_optional_import_goes_through_requires_extra_naming_its_extra() -> None:
    """A worker without an extra then fails at once naming it, not with a retried ModuleNotFoundError."""
    package = Path(airflow_ml_provider.__file__).parent
    checked = 0
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "jobs":  # runs inside the training container, where these are installed
            continue
        for line, module, extra in _unguarded_imports(ast.parse(path.read_text())):
            where = f"{path.relative_to(package)}:{line} imports {module}"
            assert extra == _extra_of(module), f"{where} outside requires_extra({_extra_of(module)!r})"
            checked += 1
    assert checked > 30  # the scan sees the imports (hdfs, docker, mlflow, pyspark, pandas, pyarrow)
