#!/bin/sh
# Generates ./configure. configure.ac requires the TAP driver that
# `make check` uses (AC_REQUIRE_AUX_FILE), so autoreconf's --install
# copies it into build-aux/ and `make dist` ships it.
set -e
cd "$(dirname "$0")"
autoreconf -fi
