# syntax=docker/dockerfile:1
# poosmsd in a small image: one static binary, a non-root user, data in a
# volume at /var/lib/poosms/data.
#
#   docker build -t poosms .
#   docker run -p 5222:5222 -p 5223:5223 -p 5269:5269 -p 5270:5270 -p 5280:5280 \
#     -p 3478:3478/udp -p 3478:3478/tcp -p 7882:7882/udp -p 7881:7881/tcp \
#     -e POOSMS_DOMAIN=chat.example.org -v poosms-data:/var/lib/poosms/data poosms

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# .git comes along so Go stamps the commit into the binary ("poosmsd
# version"); a release build names its version: --build-arg VERSION=v1.2.0.
COPY . .
ARG VERSION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION}" -o /poosmsd ./cmd/poosmsd
# The runtime image has no shell: prepare the data directory here.
RUN mkdir -p /rootfs/var/lib/poosms/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /poosmsd /poosmsd
COPY --from=build --chown=65532:65532 /rootfs/var/lib/poosms /var/lib/poosms
USER 65532:65532
WORKDIR /var/lib/poosms
ENV POOSMS_DATA_DIR=/var/lib/poosms/data
VOLUME ["/var/lib/poosms/data"]
# 5222 XMPP (STARTTLS), 5223 XMPP (direct TLS), 5269/5270 federation
# (STARTTLS/direct TLS), 5280 HTTP (registration, web client, WebSocket,
# metrics), 3478 TURN/STUN, 7882/udp and 7881/tcp media.
EXPOSE 5222 5223 5269 5270 5280 3478/udp 3478/tcp 7882/udp 7881/tcp
ENTRYPOINT ["/poosmsd"]
