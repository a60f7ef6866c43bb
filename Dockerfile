# The webhook service image: the runner image (dlgate and every dependency, built offline from
# a local base by scripts/build-images.sh) plus gunicorn, as a non-root user.
#
#   scripts/build-images.sh          builds dlgate-service:latest
#   docker run -p 8080:8080 --env-file service.env \
#     -v /var/run/docker.sock:/var/run/docker.sock --group-add $(stat -c %g /var/run/docker.sock) \
#     -v /var/lib/dlgate:/var/lib/dlgate dlgate-service:latest
#
# The data folder must have the same path inside and outside (the sandbox containers the worker
# starts mount job folders by host path). See docs/service.md.
ARG RUNNER=dlgate-runner:latest
FROM ${RUNNER}
USER root
RUN mkdir -p /var/lib/dlgate && chown dlgate:dlgate /var/lib/dlgate
USER dlgate
WORKDIR /var/lib/dlgate
ENV HOME=/var/lib/dlgate DLGATE_DATA_DIR=/var/lib/dlgate PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python3", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["dlgate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
