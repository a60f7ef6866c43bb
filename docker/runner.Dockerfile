# The sandbox the service's workers run the gate in (scripts/build-images.sh builds it).
# DEPS is the locally built dependency image: a debootstrapped Debian with a venv at /opt/dlgate.
ARG DEPS=dlgate-deps:latest
FROM ${DEPS}
COPY dlgate-*.whl /tmp/
RUN /opt/dlgate/bin/pip install -q --no-index --no-deps --disable-pip-version-check /tmp/dlgate-*.whl \
    && rm /tmp/dlgate-*.whl \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp dlgate \
    && mkdir -p /work /out /mlflow && chown dlgate:dlgate /work /out /mlflow
# Git refuses repositories owned by another uid; the job folder is the container's own.
RUN git config --system safe.directory '*'
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["dlgate"]
