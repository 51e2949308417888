/*
 * gRPC message framing and status parsing (see grpc_wire.h).
 *
 * Happy path: the transport feeds every DATA chunk to grpc_decoder_feed() and
 * drains grpc_decoder_next() until it returns 0; header callbacks go to
 * grpc_status_header(); when the stream closes grpc_status_code() says how
 * the call ended.
 *
 * Failure modes: a compressed flag (we never send grpc-accept-encoding, so a
 * server must not compress) and an oversized length are reported as errors
 * and the transport resets the stream; truncated messages at stream end are
 * detected with grpc_decoder_pending().
 */
#include "grpc_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"

void grpc_decoder_init(struct grpc_decoder *d)
{
    memset(d, 0, sizeof(*d));
}

void grpc_decoder_free(struct grpc_decoder *d)
{
    free(d->buf);
    memset(d, 0, sizeof(*d));
}

int grpc_decoder_feed(struct grpc_decoder *d, const uint8_t *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    /* Drop what was already delivered before growing. */
    if (d->off > 0) {
        memmove(d->buf, d->buf + d->off, d->len - d->off);
        d->len -= d->off;
        d->off = 0;
    }
    if (d->len + len > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->len + len) {
            cap *= 2;
        }
        uint8_t *nb = realloc(d->buf, cap);
        if (nb == NULL) {
            return -ENOMEM;
        }
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, len);
    d->len += len;
    return 0;
}

int grpc_decoder_next(struct grpc_decoder *d, const uint8_t **msg, size_t *len)
{
    size_t avail = d->len - d->off;
    if (avail < 5) {
        return 0;
    }
    const uint8_t *p = d->buf + d->off;
    uint32_t n = ((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 8) | (uint32_t)p[4];
    if (p[0] != 0) {
        return KEEL_EUNIMPLEMENTED;
    }
    if (n > KEEL_GRPC_MAX_MSG) {
        return KEEL_ETOOBIG;
    }
    if (avail - 5 < n) {
        return 0;
    }
    *msg = p + 5;
    *len = n;
    d->off += 5 + (size_t)n;
    if (d->off == d->len) {
        d->off = d->len = 0; /* the pointer stays valid: no memmove yet */
    }
    return 1;
}

size_t grpc_decoder_pending(const struct grpc_decoder *d)
{
    return d->len - d->off;
}

void grpc_frame_prefix(uint8_t out[5], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

void grpc_percent_decode(const char *in, size_t len, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%' && i + 2 < len) {
            int hi = hexval(in[i + 1]);
            int lo = hexval(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out[j++] = (char)(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out[j++] = in[i];
    }
    out[j] = '\0';
}

void grpc_timeout_format(uint64_t ms, char *out)
{
    /* The value has at most 8 digits (PROTOCOL-HTTP2.md: TimeoutValue). */
    if (ms <= 99999999ull) {
        snprintf(out, 12, "%llum", (unsigned long long)ms);
    } else if (ms / 1000 <= 99999999ull) {
        snprintf(out, 12, "%lluS", (unsigned long long)(ms / 1000));
    } else {
        snprintf(out, 12, "%lluH",
                 (unsigned long long)(ms / 3600000 > 99999999ull
                                          ? 99999999ull
                                          : ms / 3600000));
    }
}

void grpc_status_init(struct grpc_status *s)
{
    s->http_status = 0;
    s->grpc_status = -1;
    s->message = NULL;
    s->content_type_ok = 0;
}

void grpc_status_free(struct grpc_status *s)
{
    free(s->message);
    grpc_status_init(s);
}

static int name_is(const char *name, size_t namelen, const char *want)
{
    return namelen == strlen(want) && memcmp(name, want, namelen) == 0;
}

static int parse_small_int(const char *v, size_t len, int *out)
{
    if (len == 0 || len > 9) {
        return -1;
    }
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        n = n * 10 + (v[i] - '0');
    }
    *out = n;
    return 0;
}

int grpc_status_header(struct grpc_status *s, const char *name,
                       size_t namelen, const char *value, size_t valuelen)
{
    if (name_is(name, namelen, ":status")) {
        int v;
        if (parse_small_int(value, valuelen, &v) == 0) {
            s->http_status = v;
        }
    } else if (name_is(name, namelen, "grpc-status")) {
        int v;
        if (parse_small_int(value, valuelen, &v) == 0) {
            s->grpc_status = v;
        } else {
            s->grpc_status = KEEL_GRPC_UNKNOWN;
        }
    } else if (name_is(name, namelen, "grpc-message")) {
        char *m = malloc(valuelen + 1);
        if (m == NULL) {
            return -ENOMEM;
        }
        grpc_percent_decode(value, valuelen, m);
        free(s->message);
        s->message = m;
    } else if (name_is(name, namelen, "content-type")) {
        static const char ct[] = "application/grpc";
        s->content_type_ok = valuelen >= sizeof(ct) - 1 &&
                             memcmp(value, ct, sizeof(ct) - 1) == 0;
    }
    return 0;
}

int grpc_code_from_http(int http_status)
{
    switch (http_status) {
        case 200:
            return KEEL_GRPC_UNKNOWN; /* 200 without grpc-status */
        case 400:
            return KEEL_GRPC_INTERNAL;
        case 401:
            return KEEL_GRPC_UNAUTHENTICATED;
        case 403:
            return KEEL_GRPC_PERMISSION_DENIED;
        case 404:
            return KEEL_GRPC_UNIMPLEMENTED;
        case 429:
        case 502:
        case 503:
        case 504:
            return KEEL_GRPC_UNAVAILABLE;
        default:
            return KEEL_GRPC_UNKNOWN;
    }
}

int grpc_status_code(const struct grpc_status *s)
{
    if (s->grpc_status >= 0) {
        return s->grpc_status;
    }
    if (s->http_status != 0) {
        return grpc_code_from_http(s->http_status);
    }
    return KEEL_GRPC_UNKNOWN;
}

const char *grpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    };
    if (code < 0 || code > 16) {
        return "Unknown";
    }
    return names[code];
}
