"""Register a trained model in the MLflow Model Registry and promote it with aliases.

Aliases only: registry *stages* are deprecated in MLflow and not used. DAG files import this
module; it imports no mlflow and does no I/O (the hook is built when the task runs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_ml_provider.exceptions import InvalidSpecError, ModelRegistryError
from airflow_ml_provider.operators.mlflow_common import MlflowOperator, check_name
from airflow_ml_provider.utils.optional_deps import requires_extra
from airflow_ml_provider.utils.templating import is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Version tag holding the source a version was registered from (what makes a retry idempotent).
TAG_SOURCE = "airflow.source_uri"
TAG_GATE = "airflow.gate"
#: Registered-model tag prefix: ``airflow.alias.<alias>`` holds the version this operator last gave
#: the alias. It outlives the version (MLflow drops a deleted version's aliases), so a vanished
#: champion can be told apart from a model that never had one.
TAG_ALIAS = "airflow.alias"

__all__ = [
    "TAG_ALIAS",
    "TAG_GATE",
    "TAG_SOURCE",
    "MlflowPromoteModelOperator",
    "MlflowRegisterModelOperator",
    "ModelRegistryError",  # re-exported: it was defined here before exceptions.py held every error
]


class MlflowRegisterModelOperator(MlflowOperator):
    """Register a model version from a run, a logged model or an artifact location; idempotent.

    * ``model_uri``: ``runs:/<run_id>/<path>``, ``models:/m-<logged model id>`` (MLflow 3's
      ``log_model(name=…)``) or a model artifact location (``mlflow-artifacts:/…``, ``s3://…``).
    * The registered model is created when missing. Its new version is tagged with the source,
      the dag, task and run ids; a retry (or a rerun) for the same source finds that version and
      returns it instead of creating a second one.
    * Waits until the version is ``READY``; ``FAILED_REGISTRATION`` fails the task with the
      registry's message. A source that does not resolve (unknown run, a run without a model)
      fails before anything is registered: a registered model created by this call is removed.

    Returns (XCom) ``{"name", "version", "model_uri": "models:/<name>/<version>", "source",
    "run_id", "created"}``.

    :param name: registered model name (templated).
    :param model_uri: the model to register (templated).
    :param description: version description (templated).
    :param tags: extra version tags (templated).
    :param await_ready_timeout: seconds to wait for ``READY``.
    :param mlflow_conn_id: the ``ml_mlflow`` connection.
    """

    template_fields: Sequence[str] = ("name", "model_uri", "description", "tags")

    def __init__(
        self,
        *,
        name: str,
        model_uri: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        await_ready_timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_name(name, "name")
        check_name(model_uri, "model_uri")
        if not is_templated(model_uri) and ":" not in model_uri and not model_uri.startswith("/"):
            raise InvalidSpecError(
                f"model_uri={model_uri!r} is not a model URI; use runs:/<run_id>/model, models:/m-<id> "
                "or an artifact location."
            )
        if await_ready_timeout <= 0:
            raise InvalidSpecError(f"await_ready_timeout={await_ready_timeout!r} must be > 0 seconds, e.g. 300.")
        self.name = name
        self.model_uri = model_uri
        self.description = description
        self.tags = dict(tags or {})
        self.await_ready_timeout = await_ready_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        """Register (or find) the version, wait until READY, return its coordinates."""
        ti = context["ti"]
        tags = {
            **{str(k): str(v) for k, v in self.tags.items()},
            TAG_SOURCE: self.model_uri,
            "airflow.dag_id": ti.dag_id,
            "airflow.task_id": ti.task_id,
            "airflow.run_id": ti.run_id,
        }
        with self.hook.scoped():
            client = self.hook.get_client()
            existing = self._existing_version(client)
            if existing is not None:
                self.log.info("Version %s of %s was already registered from %s.", existing, self.name, self.model_uri)
                version, created = existing, False
            else:
                version, created = self._register(client, tags), True
            mv = self._await_ready(client, version)
        result = {
            "name": self.name,
            "version": str(mv.version),
            "model_uri": f"models:/{self.name}/{mv.version}",
            "source": mv.source,
            "run_id": mv.run_id or None,
            "created": created,
        }
        self.log.info("Registered %s (source %s).", result["model_uri"], mv.source)
        return result

    def _existing_version(self, client: Any) -> str | None:
        with requires_extra("mlflow"):
            from mlflow.exceptions import MlflowException

        try:
            versions = client.search_model_versions(f"name='{self.name}'")
        except MlflowException as e:
            raise self.explain(e, f"Searching versions of {self.name!r}") from None
        for mv in versions:
            if (mv.tags or {}).get(TAG_SOURCE) == self.model_uri and mv.status != "FAILED_REGISTRATION":
                return str(mv.version)
        return None

    def _register(self, client: Any, tags: dict[str, str]) -> str:
        with requires_extra("mlflow"):
            import mlflow
            from mlflow.exceptions import MlflowException

        created_model = False
        try:
            client.create_registered_model(self.name)
            created_model = True
        except MlflowException as e:
            if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise self.explain(e, f"Creating registered model {self.name!r}") from None
        try:
            mv = mlflow.register_model(self.model_uri, self.name, await_registration_for=0, tags=tags)
        except MlflowException as e:
            if created_model:
                self._drop_empty_model(client)
            raise self.explain(e, f"Registering {self.model_uri} as {self.name!r}") from None
        if self.description:
            client.update_model_version(self.name, mv.version, description=self.description)
        return str(mv.version)

    def _drop_empty_model(self, client: Any) -> None:
        try:
            if not client.search_model_versions(f"name='{self.name}'"):
                client.delete_registered_model(self.name)
        except Exception as e:  # noqa: BLE001  # the original error matters more; this is logged
            self.log.warning("Could not remove the empty registered model %s: %s", self.name, e)

    def _await_ready(self, client: Any, version: str) -> Any:
        deadline = time.monotonic() + self.await_ready_timeout
        delay = 0.2
        while True:
            mv = client.get_model_version(self.name, version)
            if mv.status == "READY":
                return mv
            if mv.status == "FAILED_REGISTRATION":
                why = (mv.status_message or "no reason given").rstrip(".")
                raise ModelRegistryError(f"Version {version} of {self.name!r} failed registration: {why}.")
            if time.monotonic() > deadline:
                raise ModelRegistryError(
                    f"Version {version} of {self.name!r} is still {mv.status} after {self.await_ready_timeout:.0f} s."
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class MlflowPromoteModelOperator(MlflowOperator):
    """Point an alias (default ``champion``) at a model version, optionally behind a metric gate.

    Without ``gate_metric`` the alias simply moves. With it, the new version becomes champion
    only if its metric beats the current champion's by more than ``min_improvement`` (in the
    direction ``higher_is_better``); otherwise it gets ``challenger_alias``. The first version
    ever (no champion yet) becomes champion. The decision and both metric values are recorded
    as version tags (``airflow.gate.*``) on the candidate. Metrics are read from the version's
    run, or from its logged model when the version has no run.

    When the alias holds no version although the model has other versions (its version was
    deleted, which removes its aliases in MLflow, or someone removed the alias), the reason and a
    warning say so, naming the version that held it when this operator set it (recorded in the
    registered-model tag ``airflow.alias.<alias>``). By default the candidate is then promoted
    without a comparison (as for a first version); with ``compare_with_best_if_no_champion`` it
    must beat the best ``gate_metric`` among the other existing versions instead.

    Returns (XCom) ``{"name", "version", "promoted", "alias", "model_uri", "previous_version",
    "candidate_metric", "champion_metric", "reason"}`` — branch on ``promoted`` (e.g. skip the
    deploy with ``@task.branch`` or ``@task.short_circuit``).

    :param name: registered model name (templated).
    :param version: the candidate version (templated; e.g. from the register task's XCom).
    :param alias: the alias to move when promoted.
    :param gate_metric: metric name compared against the current holder of ``alias``; None = no gate.
    :param higher_is_better: direction of ``gate_metric``.
    :param min_improvement: margin the candidate must beat the champion by (absolute, >= 0).
    :param challenger_alias: alias given to a candidate that did not win.
    :param compare_with_best_if_no_champion: with ``gate_metric``, when ``alias`` holds no version,
        compare the candidate against the best other existing version (by ``gate_metric``; versions
        without it are skipped) instead of promoting it unconditionally. Default ``False``.
    :param mlflow_conn_id: the ``ml_mlflow`` connection.
    """

    template_fields: Sequence[str] = ("name", "version", "alias", "gate_metric")

    def __init__(
        self,
        *,
        name: str,
        version: str | int,
        alias: str = "champion",
        gate_metric: str | None = None,
        higher_is_better: bool = True,
        min_improvement: float = 0.0,
        challenger_alias: str = "challenger",
        compare_with_best_if_no_champion: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_name(name, "name")
        check_name(alias, "alias")
        check_name(challenger_alias, "challenger_alias")
        if alias == challenger_alias:
            raise InvalidSpecError(f"alias and challenger_alias are both {alias!r}; give them different names.")
        if not isinstance(min_improvement, (int, float)) or not math.isfinite(min_improvement) or min_improvement < 0:
            raise InvalidSpecError(f"min_improvement={min_improvement!r} must be a number >= 0, e.g. 0.01.")
        if isinstance(version, int) and version < 1:
            raise InvalidSpecError(f"version={version!r} must be a registered version number >= 1.")
        if not isinstance(compare_with_best_if_no_champion, bool):
            raise InvalidSpecError(
                f"compare_with_best_if_no_champion={compare_with_best_if_no_champion!r} must be True or False."
            )
        if compare_with_best_if_no_champion and not gate_metric:
            raise InvalidSpecError(
                "compare_with_best_if_no_champion=True needs gate_metric, the metric to compare, "
                "e.g. gate_metric='rmse'."
            )
        self.name = name
        self.version = str(version) if isinstance(version, int) else version
        self.alias = alias
        self.gate_metric = gate_metric
        self.higher_is_better = higher_is_better
        self.min_improvement = float(min_improvement)
        self.challenger_alias = challenger_alias
        self.compare_with_best_if_no_champion = compare_with_best_if_no_champion

    def execute(self, context: Context) -> dict[str, Any]:
        """Decide, move the alias, record the decision; see the class docstring."""
        with requires_extra("mlflow"):
            from mlflow.exceptions import MlflowException

        version = str(self.version).strip()
        if not version.isdigit():
            raise InvalidSpecError(
                f"version={self.version!r} is not a version number; pass the register XCom's version."
            )
        with self.hook.scoped():
            client = self.hook.get_client()
            try:
                candidate = client.get_model_version(self.name, version)
            except MlflowException as e:
                raise self.explain(e, f"Version {version} of model {self.name!r}") from None
            champion = self._current(client)
            decision = self._decide(client, candidate, champion)
            target = self.alias if decision["promoted"] else self.challenger_alias
            try:
                client.set_registered_model_alias(self.name, target, version)
                for key, value in decision.items():
                    if key != "promoted" and value is not None:
                        client.set_model_version_tag(self.name, version, f"{TAG_GATE}.{key}", str(value))
                client.set_model_version_tag(
                    self.name, version, f"{TAG_GATE}.decision", "promoted" if decision["promoted"] else "challenger"
                )
                if decision["promoted"]:
                    client.set_registered_model_tag(self.name, f"{TAG_ALIAS}.{self.alias}", version)
            except MlflowException as e:
                raise self.explain(e, f"Setting alias {target!r} on {self.name!r} version {version}") from None
        result = {
            "name": self.name,
            "version": version,
            "alias": target,
            "model_uri": f"models:/{self.name}@{target}",
            "previous_version": None if champion is None else str(champion.version),
            **decision,
        }
        self.log.info("%s version %s -> @%s (%s).", self.name, version, target, decision["reason"])
        return result

    def _current(self, client: Any) -> Any:
        with requires_extra("mlflow"):
            from mlflow.exceptions import MlflowException

        try:
            return client.get_model_version_by_alias(self.name, self.alias)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
                # No such alias yet (MLflow answers INVALID_PARAMETER_VALUE on some stores) - but the
                # model itself must exist, or the candidate lookup above would already have failed.
                return None
            raise self.explain(e, f"Alias {self.alias!r} of {self.name!r}") from None

    def _metric(self, client: Any, mv: Any) -> float:
        metric = str(self.gate_metric)
        value = None
        if mv.run_id:
            value = client.get_run(mv.run_id).data.metrics.get(metric)
        if value is None and getattr(mv, "model_id", None):
            logged = client.get_logged_model(mv.model_id)
            value = next((m.value for m in (logged.metrics or []) if m.key == metric), None)
        if value is None or not math.isfinite(float(value)):
            raise ModelRegistryError(
                f"Version {mv.version} of {self.name!r} has no finite metric {metric!r} "
                "(looked in its run and its logged model); log it or change gate_metric."
            )
        return float(value)

    def _decide(self, client: Any, candidate: Any, champion: Any) -> dict[str, Any]:
        decision: dict[str, Any] = {"candidate_metric": None, "champion_metric": None}
        if champion is None:
            return self._decide_without_champion(client, candidate)
        if str(champion.version) == str(candidate.version):
            return {**decision, "promoted": True, "reason": f"already @{self.alias}"}
        if not self.gate_metric:
            return {**decision, "promoted": True, "reason": "no gate"}
        new, old = self._metric(client, candidate), self._metric(client, champion)
        return self._compare(new, old, f"@{self.alias} v{champion.version}")

    def _compare(self, new: float, old: float, against: str, prefix: str = "") -> dict[str, Any]:
        gain = (new - old) if self.higher_is_better else (old - new)
        promoted = gain > self.min_improvement
        better = "higher" if self.higher_is_better else "lower"
        reason = (
            f"{prefix}{self.gate_metric} {new:.6g} vs {against} {old:.6g} "
            f"({better} is better, margin {self.min_improvement:g}): {'wins' if promoted else 'does not win'}"
        )
        return {"candidate_metric": new, "champion_metric": old, "promoted": promoted, "reason": reason}

    def _decide_without_champion(self, client: Any, candidate: Any) -> dict[str, Any]:
        """No version holds the alias: say why (first version, or the holder is gone), then promote,
        or compare with the best other version (``compare_with_best_if_no_champion``)."""
        with requires_extra("mlflow"):
            from mlflow.exceptions import MlflowException

        alias, own = self.alias, str(candidate.version)
        try:
            existing = [mv for mv in client.search_model_versions(f"name='{self.name}'") if str(mv.version) != own]
            recorded = (client.get_registered_model(self.name).tags or {}).get(f"{TAG_ALIAS}.{alias}")
        except MlflowException as e:
            raise self.explain(e, f"Versions of {self.name!r}") from None
        numbers = {str(mv.version) for mv in existing}
        deleted = [str(n) for n in range(1, int(own)) if str(n) not in numbers]
        if recorded and recorded != own and recorded not in numbers:
            what = (
                f"@{alias} is gone: it pointed at version {recorded}, which no longer exists (deleting a "
                "version removes its aliases)"
            )
        elif recorded and recorded != own:
            what = f"@{alias} is gone: it was removed from version {recorded}, which still exists"
        elif deleted:
            what = f"no version holds @{alias}; versions {', '.join(deleted)} were deleted (one may have held it)"
        else:
            what = f"no @{alias} yet"
        candidate_metric = self._metric(client, candidate) if self.gate_metric else None
        gone = what != f"no @{alias} yet"
        if not existing or not self.compare_with_best_if_no_champion:
            if gone and existing:
                self.log.warning(
                    "%s: %s; version %s becomes @%s without a comparison. Set compare_with_best_if_no_champion"
                    "=True (with gate_metric) to compare it with the best existing version instead.",
                    self.name, what, own, alias,
                )  # fmt: skip
            becomes = "the first version becomes it" if own == "1" else f"version {own} becomes it"
            return {
                "candidate_metric": candidate_metric,
                "champion_metric": None,
                "promoted": True,
                "reason": f"{what}: {becomes}{' without a comparison' if existing else ''}",
            }
        assert candidate_metric is not None  # compare_with_best_if_no_champion requires gate_metric
        scored = []
        for mv in existing:
            if mv.status != "READY":
                continue
            try:
                scored.append((self._metric(client, mv), str(mv.version)))
            except (ModelRegistryError, MlflowException):
                self.log.info("Version %s of %s has no %s; not compared.", mv.version, self.name, self.gate_metric)
        if not scored:
            return {
                "candidate_metric": candidate_metric,
                "champion_metric": None,
                "promoted": True,
                "reason": f"{what}, and none has a finite {self.gate_metric}: version {own} becomes it",
            }
        best_value, best_version = (max if self.higher_is_better else min)(scored, key=lambda pair: pair[0])
        return self._compare(candidate_metric, best_value, f"the best existing version v{best_version}", f"{what}; ")
