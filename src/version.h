/* version.h -- the version reported by --version and the start-up log;
 * autoconf passes PACKAGE_VERSION on the command line. */
#ifndef SSEGATE_VERSION_H
#define SSEGATE_VERSION_H

#ifdef PACKAGE_VERSION
#define SSEGATE_VERSION PACKAGE_VERSION
#else
#define SSEGATE_VERSION "0.0.0-dev"
#endif

#endif
