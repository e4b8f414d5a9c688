# ssegate image: build with the -dev packages, run on slim Debian with only
# the runtime libraries, as a non-root user.
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential autoconf automake autoconf-archive libtool pkg-config \
      libmicrohttpd-dev libhiredis-dev libevent-dev libjson-c-dev liburing-dev \
      libjwt-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN ./autogen.sh && ./configure --prefix=/usr && make -j"$(nproc)" ssegate \
 && install -D -m 0755 ssegate /out/usr/sbin/ssegate

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libhiredis0.14 libevent-2.1-7 libevent-pthreads-2.1-7 \
      libjson-c5 liburing2 libjwt0 libssl3 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --uid 10001 ssegate
COPY --from=build /out/ /
USER ssegate
ENV PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["/usr/sbin/ssegate"]
