#!/bin/sh
# The pip set-up every image built FROM the base image shares (train, serve): create the venv
# /opt/venv and pip-install the requirements given as arguments into it, trusting the builder's CA
# bundle and using the builder's package index.
#
# Usage, in a Dockerfile whose context holds build-ca.crt and this script (scripts/testbed/docker_bed.py
# `docker_build` puts both into every context):
#
#     ARG PIP_INDEX=
#     ARG PIP_EXTRA_INDEXES=
#     COPY build-ca.crt pip-install.sh /usr/local/share/airflow-ml-provider/
#     RUN sh /usr/local/share/airflow-ml-provider/pip-install.sh numpy==2.4.6 ...
#
# PIP_INDEX (an index URL) and PIP_EXTRA_INDEXES (space-separated URLs) are build arguments: a RUN
# step sees a declared ARG as an environment variable. Empty or unset: pip's default index.
# A script rather than a shared Dockerfile stage because the legacy builder the test bed uses has no
# include, and a third image only to hold these lines would need its own cache key and build.
set -eu

here=$(dirname "$0")
python3 -m venv /opt/venv
set -- --no-cache-dir --no-compile --disable-pip-version-check --cert "$here/build-ca.crt" "$@"
if [ -n "${PIP_INDEX:-}" ]; then
    set -- --index-url "$PIP_INDEX" "$@"
fi
for url in ${PIP_EXTRA_INDEXES:-}; do
    set -- --extra-index-url "$url" "$@"
done
exec /opt/venv/bin/pip install "$@"
