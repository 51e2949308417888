/* libkeel internals shared between its files (not installed, not API). */
#ifndef KEEL_INT_H
#define KEEL_INT_H

#include "keel.h"

/* The loop a client runs on. */
uv_loop_t *keel__client_loop(struct keel_client *c);

#endif /* KEEL_INT_H */
