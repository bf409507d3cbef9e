# doozertw node image: `twistd -n doozer` as an unprivileged user, configured
# through DOOZER_* environment variables (docs/configuration.md) and,
# optionally, a cluster file (DOOZER_CONFIG). See docs/deployment.md.
#
#   docker build -t doozertw .
#   docker run -d -p 127.0.0.1:8046:8046 -p 127.0.0.1:8000:8000 \
#       -e DOOZER_WEB_HOST=localhost:8000 -v doozer-data:/var/lib/doozer doozertw
#
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and its venv
# module; scripts/check_containers.sh passes a locally built one where no
# container registry can be reached.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same layout as the systemd unit (contrib/systemd): a venv under
# /opt/doozertw, the state under /var/lib/doozer, owned by user doozer.
RUN groupadd --system --gid 10001 doozer \
 && useradd --system --uid 10001 --gid doozer --home-dir /var/lib/doozer \
        --no-create-home --shell /usr/sbin/nologin doozer \
 && install -d -o doozer -g doozer -m 0750 /var/lib/doozer \
 && install -d -m 0755 /etc/doozer

COPY . /usr/src/doozertw
# Install the checkout, then, still as root, let Twisted write its plugin
# cache (site-packages/twisted/plugins/dropin.cache): the unprivileged user
# could not, and would rescan the plugins at every start.
RUN python3 -m venv /opt/doozertw/venv \
 && /opt/doozertw/venv/bin/pip install /usr/src/doozertw \
 && /opt/doozertw/venv/bin/python -c \
        "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && /opt/doozertw/venv/bin/twistd --help | grep '^ *doozer ' \
 && rm -rf /usr/src/doozertw

ENV PATH=/opt/doozertw/venv/bin:$PATH \
    DOOZER_LISTEN=tcp:8046:interface=0.0.0.0 \
    DOOZER_WEB=tcp:8000:interface=0.0.0.0 \
    DOOZER_PEER_LISTEN=tcp:7046:interface=0.0.0.0 \
    DOOZER_DATA_DIR=/var/lib/doozer/{name}

# client port (doozer and text protocols), web port (view, HTTP API,
# /metrics, /livez, /readyz), peer port (cluster traffic)
EXPOSE 8046 8000 7046
VOLUME ["/var/lib/doozer"]
WORKDIR /var/lib/doozer
USER doozer:doozer

# Ready once the node can commit (a leader and a quorum): /readyz answers
# 200, else 503 (an error: exit 1). No curl in the slim image: Python asks,
# on the port of DOOZER_WEB (a plain tcp: endpoint; 8000 if unset).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, re, sys, urllib.request as u; w = os.environ.get('DOOZER_WEB') or 'tcp:8000'; p = re.search(r'(?:^|[:=])([0-9]+)(?::|$)', w).group(1); sys.exit(u.urlopen('http://127.0.0.1:' + p + '/readyz', timeout=3).status != 200)"]

# Exec form: twistd is PID 1 and gets SIGTERM itself (drain, leadership
# handover, exit 0). The pid file is not needed in a container.
STOPSIGNAL SIGTERM
ENTRYPOINT ["twistd", "-n", "--pidfile=", "doozer"]
CMD []
