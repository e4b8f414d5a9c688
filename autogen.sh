#!/bin/sh
# Generates ./configure. The TAP driver that `make check` uses ships with
# automake but is not installed by autoreconf, so copy it in.
set -e
cd "$(dirname "$0")"
autoreconf -fi
cp "$(automake --print-libdir)/tap-driver.sh" build-aux/
