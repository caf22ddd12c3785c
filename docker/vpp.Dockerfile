# VPP from FD.io's release packages, configured for the vls-rs suite:
# no hugepages, no DPDK, session layer on, CLI and app sockets in /run/vpp
# (a volume shared with the test container).
FROM ubuntu:24.04

ARG VPP_VERSION=26.06-release
ENV DEBIAN_FRONTEND=noninteractive

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates gnupg apt-transport-https \
 && curl -fsSL https://packagecloud.io/install/repositories/fdio/release/script.deb.sh | bash \
 && apt-get install -y --no-install-recommends \
      vpp=${VPP_VERSION} vpp-plugin-core=${VPP_VERSION} libvppinfra=${VPP_VERSION} \
 && rm -rf /var/lib/apt/lists/*

COPY startup.conf /etc/vpp/startup.conf
VOLUME ["/run/vpp"]
CMD ["/usr/bin/vpp", "-c", "/etc/vpp/startup.conf"]
