# cairn's container image: the statically linked `cairn` binary and nothing
# else. The binary is built on the host, so the image needs no base image
# and no registry:
#
#   make image                      # CGO_ENABLED=0 go build -o bin/cairn ./cmd/cairn, then docker build
#   make image IMAGE=cairn:v0.1.0   # another tag
#
# Building by hand needs the same two inputs make prepares:
#
#   CGO_ENABLED=0 go build -trimpath -o bin/cairn ./cmd/cairn
#   mkdir -p bin/image-data         # the empty data directory, owned by 65532 in the image
#   docker build -t cairn:latest .
#
# The container runs `cairn node run` as the unprivileged user 65532:65532
# (there is no /etc/passwd in the image; the numeric id is enough). Its data
# lives in the /data volume; raft listens on 7001 and HTTP on 8001, on every
# interface, so --advertise-raft and --advertise-http (or CAIRN_ADVERTISE_RAFT
# and CAIRN_ADVERTISE_HTTP) must name addresses the other members can dial.
# Listening on every interface needs TLS (or --insecure): give the member
# --peer-cert-file, --peer-key-file and --peer-trusted-ca-file (or
# CAIRN_PEER_CERT_FILE, CAIRN_PEER_KEY_FILE, CAIRN_PEER_TRUSTED_CA_FILE),
# files made by `cairn cert`, conventionally in a volume mounted at /certs.
# See docs/deploy.md.
FROM scratch

COPY --chown=0:0 bin/cairn /cairn
# The empty directory becomes /data owned by the runtime user, so a named
# volume mounted there starts out writable by it (Docker copies the image's
# ownership and mode into a new, empty volume).
COPY --chown=65532:65532 bin/image-data/ /data/
# The same for /certs, where `cairn cert` (run as the same user) writes the
# certificates into a named volume and members read them (docker-compose.yml).
# Not a VOLUME: a container without certificates should not get an anonymous
# one.
COPY --chown=65532:65532 bin/image-data/ /certs/

ENV CAIRN_DATA_DIR=/data \
    CAIRN_RAFT_ADDR=0.0.0.0:7001 \
    CAIRN_HTTP_ADDR=0.0.0.0:8001

USER 65532:65532
VOLUME ["/data"]
EXPOSE 7001 8001

# Ready means: a member of the configuration, a leader known, caught up
# (GET /readyz). The check uses the binary itself; the image has no shell.
# It dials HTTPS and reads the CLI's CA, certificate and key from the
# container's environment: set CAIRN_CACERT, CAIRN_CERT and CAIRN_KEY (the
# member's own certificate is a client certificate too). A member run with
# --insecure needs its own check (--health-cmd, or healthcheck: in Compose)
# with --endpoint http://127.0.0.1:8001.
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/cairn", "--timeout", "4s", "node", "health", "--endpoint", "https://127.0.0.1:8001"]

ENTRYPOINT ["/cairn"]
CMD ["node", "run"]
