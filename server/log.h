/*
 * keel's logger: etcd 3.4's two formats, so operators' log tooling keeps
 * matching.
 *
 *   capnslog (etcd 3.4's default):
 *     2026-11-27 10:00:00.123456 I | etcdmain: etcd Version: 3.4.23
 *   zap (--logger zap), one JSON object per line:
 *     {"level":"info","ts":"2026-11-27T10:00:00.123Z","caller":"server/main.c:80",
 *      "msg":"starting an etcd server","name":"default",...}
 *
 * Levels follow --log-level (debug|info|warn|error|panic|fatal); capnslog
 * also honours --log-package-levels. Outputs follow --log-outputs: "default"
 * and "stderr" are fd 2, "stdout" fd 1, anything else a file opened for
 * append (zap only, as etcd).
 *
 * Before log_init() (and after log_close()) records go to stderr in capnslog
 * format at info level, as etcd's own pre-configuration messages do.
 *
 * Threads: log_init()/log_close() run on the main thread before/after any
 * other thread logs. Each record is written with one write(2) per output, so
 * lines from several threads never interleave.
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_config;

enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO,
    LOG_LEVEL_NOTICE, /* capnslog "N"; zap "info" */
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
    /* capnslog "C", zap "fatal", but returns: for fatal errors after which
     * the caller cleans up and exits itself */
    LOG_LEVEL_CRITICAL,
    LOG_LEVEL_PANIC, /* logs, then abort() */
    LOG_LEVEL_FATAL, /* logs, then exit(1) */
};

enum log_field_type {
    LOG_FIELD_STR,
    LOG_FIELD_INT,
    LOG_FIELD_UINT,
    LOG_FIELD_BOOL,
    LOG_FIELD_STRS,     /* JSON array of strings */
    LOG_FIELD_DURATION, /* nanoseconds, printed as Go does ("100ms") */
};

/* A structured field (zap). Strings are borrowed for the call. */
struct log_field
{
    const char *key;
    enum log_field_type type;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        bool b;
        struct
        {
            const char *const *v;
            size_t n;
        } strs;
    } v;
};

#define LOG_STR(k, x) \
    ((struct log_field){.key = (k), .type = LOG_FIELD_STR, .v.s = (x)})
#define LOG_INT(k, x) \
    ((struct log_field){.key = (k), .type = LOG_FIELD_INT, .v.i = (x)})
#define LOG_UINT(k, x) \
    ((struct log_field){.key = (k), .type = LOG_FIELD_UINT, .v.u = (x)})
#define LOG_BOOL(k, x) \
    ((struct log_field){.key = (k), .type = LOG_FIELD_BOOL, .v.b = (x)})
#define LOG_DUR(k, x) \
    ((struct log_field){.key = (k), .type = LOG_FIELD_DURATION, .v.i = (x)})
#define LOG_STRS(k, arr, cnt)                                         \
    ((struct log_field){.key = (k), .type = LOG_FIELD_STRS,           \
                        .v.strs = {.v = (const char *const *)(arr),   \
                                   .n = (cnt)}})
/* zap.Error(err): the "error" field. */
#define LOG_ERR(x) LOG_STR("error", (x))

/* Configure format, level and outputs from cfg (logger, log-level, debug,
 * log-outputs, log-package-levels). cfg must have passed config_validate().
 * Returns 0, or -1 with a message in err (an output that cannot be opened:
 * zap's text, "couldn't open sink ..."); the previous setup stays then.
 * May be called again (tests); the previous outputs are closed. */
int log_init(const struct keel_config *cfg, char *err, size_t errlen);

/* Close file outputs and return to the pre-init default. */
void log_close(void);

/* Whether the zap (JSON) format is active. Callers that log different texts
 * for the two formats (as etcd does) branch on this. */
bool log_is_zap(void);

/* Whether a record of this level from pkg would be written. */
bool log_enabled(enum log_level level, const char *pkg);

/* A raw line on stderr, as etcd's fmt.Fprintf(os.Stderr, "[WARNING] ...").
 * A newline is added if missing. */
void log_raw(const char *line);

/* Parse a --log-level name. Returns 0 and sets *out, or -1. */
int log_level_parse(const char *name, enum log_level *out);

/* Implementation of the macros below. `file`/`line` are the caller's
 * (zap "caller"); `pkg` is the capnslog package ("etcdmain", "embed"). */
void log__printf(enum log_level level, const char *file, int line,
                 const char *pkg, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void log__fields(enum log_level level, const char *file, int line,
                 const char *pkg, const char *msg,
                 const struct log_field *fields, size_t nfields);

/* printf-style records: the same text in both formats. */
#define log_debug(pkg, ...) \
    log__printf(LOG_LEVEL_DEBUG, __FILE__, __LINE__, (pkg), __VA_ARGS__)
#define log_info(pkg, ...) \
    log__printf(LOG_LEVEL_INFO, __FILE__, __LINE__, (pkg), __VA_ARGS__)
#define log_notice(pkg, ...) \
    log__printf(LOG_LEVEL_NOTICE, __FILE__, __LINE__, (pkg), __VA_ARGS__)
#define log_warn(pkg, ...) \
    log__printf(LOG_LEVEL_WARN, __FILE__, __LINE__, (pkg), __VA_ARGS__)
#define log_error(pkg, ...) \
    log__printf(LOG_LEVEL_ERROR, __FILE__, __LINE__, (pkg), __VA_ARGS__)
#define log_fatal(pkg, ...) \
    log__printf(LOG_LEVEL_FATAL, __FILE__, __LINE__, (pkg), __VA_ARGS__)

/* Structured records: zap prints msg plus the fields; capnslog prints
 * "msg (key=value, ...)". Usage:
 *     log_infow("embed", "closing etcd server", LOG_STR("name", n));   */
#define LOG__FIELDS(...) ((const struct log_field[]){__VA_ARGS__})
#define LOG__NFIELDS(...) \
    (sizeof(LOG__FIELDS(__VA_ARGS__)) / sizeof(struct log_field))
#define log_w(level, pkg, msg, ...)                                   \
    log__fields((level), __FILE__, __LINE__, (pkg), (msg),            \
                LOG__FIELDS(__VA_ARGS__), LOG__NFIELDS(__VA_ARGS__))
#define log_debugw(pkg, msg, ...) \
    log_w(LOG_LEVEL_DEBUG, pkg, msg, __VA_ARGS__)
#define log_infow(pkg, msg, ...) log_w(LOG_LEVEL_INFO, pkg, msg, __VA_ARGS__)
#define log_warnw(pkg, msg, ...) log_w(LOG_LEVEL_WARN, pkg, msg, __VA_ARGS__)
#define log_errorw(pkg, msg, ...) \
    log_w(LOG_LEVEL_ERROR, pkg, msg, __VA_ARGS__)
#define log_fatalw(pkg, msg, ...) \
    log_w(LOG_LEVEL_FATAL, pkg, msg, __VA_ARGS__)

#endif /* KEEL_LOG_H */
