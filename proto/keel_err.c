/*
 * The single table behind keel_err.h: code -> message, name, gRPC status.
 * Lookups are a switch generated from the X-macro, so adding a row in the
 * header is the only change needed.
 */
#include "keel_err.h"

#include <errno.h>
#include <string.h>

const char *keel_strerror(int rv)
{
    if (rv == 0) {
        return "ok";
    }
    switch (rv) {
#define KEEL_ERR_MSG(name, off, grpc, msg) \
    case KEEL_E##name:                     \
        return msg;
        KEEL_ERR_MAP(KEEL_ERR_MSG)
#undef KEEL_ERR_MSG
        default:
            break;
    }
    if (rv < 0 && rv > KEEL_ERR_BASE) {
        return strerror(-rv);
    }
    return "unknown error";
}

const char *keel_errname(int rv)
{
    if (rv == 0) {
        return "OK";
    }
    switch (rv) {
#define KEEL_ERR_NAME(name, off, grpc, msg) \
    case KEEL_E##name:                      \
        return "KEEL_E" #name;
        KEEL_ERR_MAP(KEEL_ERR_NAME)
#undef KEEL_ERR_NAME
        default:
            break;
    }
    if (rv < 0 && rv > KEEL_ERR_BASE) {
        const char *n = strerrorname_np(-rv);
        return n != NULL ? n : "EUNKNOWN";
    }
    return "EUNKNOWN";
}

enum keel_grpc_code keel_err_grpc_code(int rv)
{
    if (rv == 0) {
        return KEEL_GRPC_OK;
    }
    switch (rv) {
#define KEEL_ERR_GRPC(name, off, grpc, msg) \
    case KEEL_E##name:                      \
        return KEEL_GRPC_##grpc;
        KEEL_ERR_MAP(KEEL_ERR_GRPC)
#undef KEEL_ERR_GRPC
        default:
            break;
    }
    if (rv == -ENOMEM) {
        return KEEL_GRPC_RESOURCE_EXHAUSTED;
    }
    return KEEL_GRPC_UNKNOWN;
}

int keel_err_is_keel(int rv)
{
    return rv <= KEEL_ERR_BASE && rv > KEEL_ERR_BASE - 1000;
}
