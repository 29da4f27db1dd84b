# swarmd image: the static binaries only (no base image can be pulled here).
# Build with hack/image, which runs hack/build first.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="swarmd" \
      org.opencontainers.image.description="swarm mode for Docker Engine, as a daemon beside the engine" \
      org.opencontainers.image.version="${VERSION}"
COPY bin/swarmd /swarmd
COPY bin/swarmctl /swarmctl
ENTRYPOINT ["/swarmd"]
