"""Model serving: what :class:`~airflow_ml_provider.operators.mlflow_deploy.MlflowDeployModelOperator` runs and drives.

* :mod:`.router` -- the TCP router in front of an endpoint's model containers (stdlib only; it
  runs inside the router container).
* :mod:`.router_client` -- the router container's spec, starting it, and its control API client.
* :mod:`.model_server` -- the model containers' spec and health wait.
* :mod:`.lock` -- one deploy per endpoint at a time (a never-started lock container).
* :mod:`.endpoint_docker` -- the Docker calls all of the above need, on the worker's local engine.
"""
