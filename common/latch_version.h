/*
 * latch_version.h — the one place latch's version is written. latchd --version, the admin
 * /version endpoint and clients report it.
 */
#ifndef LATCH_VERSION_H
#define LATCH_VERSION_H

#define LATCH_VERSION "0.1.0-dev"

#endif /* LATCH_VERSION_H */
