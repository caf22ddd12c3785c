# Rust toolchain + the same VPP release's libraries and headers (vpp-dev),
# plus the matching VPP source release for VCL's internal headers
# (vcl_private.h is not packaged). Nothing is built from the VPP sources.
FROM ubuntu:24.04

ARG VPP_VERSION=26.06-release
ARG VPP_TAG=v26.06
ENV DEBIAN_FRONTEND=noninteractive

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates gnupg git build-essential \
      libclang-dev pkg-config \
 && curl -fsSL https://packagecloud.io/install/repositories/fdio/release/script.deb.sh | bash \
 && apt-get install -y --no-install-recommends \
      vpp=${VPP_VERSION} vpp-dev=${VPP_VERSION} libvppinfra=${VPP_VERSION} libvppinfra-dev=${VPP_VERSION} \
 && rm -rf /var/lib/apt/lists/*

# Headers only: the tree is never configured or compiled.
RUN git clone --depth 1 --branch ${VPP_TAG} https://github.com/FDio/vpp /opt/vpp-src \
 && echo "${VPP_TAG}-0-g0000000" > /opt/vpp-src/src/scripts/.version

RUN curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:${PATH}

ENV VPP_PREFIX=/usr VPP_SRC_DIR=/opt/vpp-src VLS_VPP_EXTERNAL_DIR=/run/vpp
WORKDIR /src
