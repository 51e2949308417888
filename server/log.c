/*
 * Logging in etcd 3.4's two formats (capnslog text, zap JSON).
 *
 * Happy path: log_init() picks the format, the level (--log-level, --debug,
 * capnslog's --log-package-levels) and opens the outputs; every record is
 * formatted into one buffer and written with one write(2) per output.
 *
 * Formats, checked against /usr/bin/etcd 3.4.23's stderr:
 *   capnslog: "2006-01-02 15:04:05.000000 I | pkg: message" in local time;
 *             level letters D I N W E C (capnslog's pretty formatter).
 *   zap:      {"level":"info","ts":"2006-01-02T15:04:05.000Z0700",
 *             "caller":"dir/file.c:line","msg":"...",<fields>} (etcd's
 *             logutil.DefaultZapLoggerConfig: lowercase level, ISO8601 time,
 *             short caller). Strings are JSON-escaped; invalid UTF-8 bytes
 *             become U+FFFD, as zap does, so every line is valid JSON.
 *
 * Failure modes: an output file that cannot be opened fails log_init() with
 * zap's message; a failed write is dropped (there is nowhere to report it).
 * LOG_LEVEL_FATAL exits(1) after writing, LOG_LEVEL_PANIC aborts.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

#define LOG_MAX_OUTPUTS 8
#define LOG_MAX_PKGS 32

enum log_format { LOG_FORMAT_CAPNSLOG, LOG_FORMAT_ZAP };

struct log_pkg_level
{
    char pkg[64];
    enum log_level level;
};

static struct
{
    enum log_format format;
    enum log_level level;
    int fds[LOG_MAX_OUTPUTS];
    bool owned[LOG_MAX_OUTPUTS];
    size_t nfds;
    struct log_pkg_level pkgs[LOG_MAX_PKGS];
    size_t npkgs;
} L = {LOG_FORMAT_CAPNSLOG, LOG_LEVEL_INFO, {2}, {false}, 1, {{"", 0}}, 0};

/* A growable line buffer: on the stack first, on the heap if a record is
 * long. On allocation failure the record is truncated, never lost. */
struct line
{
    char *p;
    size_t len, cap;
    bool heap;
    char stack[2048];
};

static void line_init(struct line *l)
{
    l->p = l->stack;
    l->len = 0;
    l->cap = sizeof(l->stack);
    l->heap = false;
}

static void line_free(struct line *l)
{
    if (l->heap) {
        free(l->p);
    }
}

static bool line_reserve(struct line *l, size_t n)
{
    if (l->len + n + 1 <= l->cap) {
        return true;
    }
    size_t cap = l->cap * 2;
    while (cap < l->len + n + 1) {
        cap *= 2;
    }
    char *p = l->heap ? realloc(l->p, cap) : malloc(cap);
    if (p == NULL) {
        return false;
    }
    if (!l->heap) {
        memcpy(p, l->p, l->len);
    }
    l->p = p;
    l->cap = cap;
    l->heap = true;
    return true;
}

static void line_add(struct line *l, const char *s, size_t n)
{
    if (!line_reserve(l, n)) {
        n = l->cap - l->len - 1;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void line_puts(struct line *l, const char *s)
{
    line_add(l, s, strlen(s));
}

static void line_vprintf(struct line *l, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n >= l->cap - l->len) {
        if (line_reserve(l, (size_t)n)) {
            vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap2);
        } else {
            n = (int)(l->cap - l->len - 1);
        }
    }
    l->len += (size_t)n;
    va_end(ap2);
}

static void line_printf(struct line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void line_printf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    line_vprintf(l, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    size_t n;
    unsigned min;
    unsigned cp;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

static void line_json_str(struct line *l, const char *s)
{
    line_add(l, "\"", 1);
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    while (*p != '\0') {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            line_add(l, e, 2);
            p++;
        } else if (c == '\n') {
            line_add(l, "\\n", 2);
            p++;
        } else if (c == '\r') {
            line_add(l, "\\r", 2);
            p++;
        } else if (c == '\t') {
            line_add(l, "\\t", 2);
            p++;
        } else if (c < 0x20) {
            line_printf(l, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            line_add(l, (const char *)p, 1);
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n == 0) {
                line_puts(l, "\\ufffd");
                p++;
            } else {
                line_add(l, (const char *)p, n);
                p += n;
            }
        }
    }
    line_add(l, "\"", 1);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void emit(struct line *l)
{
    if (l->len == 0 || l->p[l->len - 1] != '\n') {
        line_add(l, "\n", 1);
    }
    for (size_t i = 0; i < L.nfds; i++) {
        write_all(L.fds[i], l->p, l->len);
    }
}

/* ------------------------------------------------------------------------ */

int log_level_parse(const char *name, enum log_level *out)
{
    static const struct
    {
        const char *name;
        enum log_level level;
    } t[] = {
        {"debug", LOG_LEVEL_DEBUG}, {"info", LOG_LEVEL_INFO},
        {"warn", LOG_LEVEL_WARN},   {"error", LOG_LEVEL_ERROR},
        {"dpanic", LOG_LEVEL_CRITICAL}, {"panic", LOG_LEVEL_CRITICAL},
        {"fatal", LOG_LEVEL_CRITICAL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(name, t[i].name) == 0) {
            *out = t[i].level;
            return 0;
        }
    }
    return -1;
}

/* capnslog.ParseLevel */
static int capnslog_level(const char *s, size_t n, enum log_level *out)
{
    static const struct
    {
        const char *name;
        const char *letter;
        enum log_level level;
    } t[] = {
        {"CRITICAL", "C", LOG_LEVEL_CRITICAL}, {"ERROR", "E", LOG_LEVEL_ERROR},
        {"WARNING", "W", LOG_LEVEL_WARN},   {"NOTICE", "N", LOG_LEVEL_NOTICE},
        {"INFO", "I", LOG_LEVEL_INFO},      {"DEBUG", "D", LOG_LEVEL_DEBUG},
        {"TRACE", "T", LOG_LEVEL_DEBUG},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if ((strlen(t[i].name) == n && strncmp(s, t[i].name, n) == 0) ||
            (n == 1 && s[0] == t[i].letter[0])) {
            *out = t[i].level;
            return 0;
        }
    }
    return -1;
}

/* "pkg=LEVEL,pkg2=LEVEL"; "*" sets the global level (capnslog
 * RepoLogger.ParseLogLevelConfig). Returns 0 or -1 (nothing applied). */
static int parse_pkg_levels(const char *spec, enum log_level *global)
{
    struct log_pkg_level tmp[LOG_MAX_PKGS];
    size_t n = 0;
    enum log_level g = *global;
    const char *p = spec;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        if (eq == NULL || eq == p) {
            return -1;
        }
        size_t pl = (size_t)(eq - p);
        enum log_level lv;
        if (capnslog_level(eq + 1, len - pl - 1, &lv) != 0) {
            return -1;
        }
        if (pl == 1 && p[0] == '*') {
            g = lv;
        } else {
            if (n == LOG_MAX_PKGS || pl >= sizeof(tmp[0].pkg)) {
                return -1;
            }
            memcpy(tmp[n].pkg, p, pl);
            tmp[n].pkg[pl] = '\0';
            tmp[n].level = lv;
            n++;
        }
        p += len;
        if (*p == ',') {
            p++;
        }
    }
    memcpy(L.pkgs, tmp, n * sizeof(tmp[0]));
    L.npkgs = n;
    *global = g;
    return 0;
}

static void close_outputs(void)
{
    for (size_t i = 0; i < L.nfds; i++) {
        if (L.owned[i]) {
            close(L.fds[i]);
        }
    }
    L.fds[0] = 2;
    L.owned[0] = false;
    L.nfds = 1;
}

void log_close(void)
{
    close_outputs();
    L.format = LOG_FORMAT_CAPNSLOG;
    L.level = LOG_LEVEL_INFO;
    L.npkgs = 0;
}

static bool has_fd(const int *fds, size_t n, int fd)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] == fd) {
            return true;
        }
    }
    return false;
}

int log_init(const struct keel_config *cfg, char *err, size_t errlen)
{
    int fds[LOG_MAX_OUTPUTS];
    bool owned[LOG_MAX_OUTPUTS];
    size_t n = 0;
    enum log_level level;

    if (log_level_parse(cfg->log_level, &level) != 0) {
        snprintf(err, errlen, "unknown level \"%s\"", cfg->log_level);
        return -1;
    }
    if (cfg->debug) {
        level = LOG_LEVEL_DEBUG;
    }
    bool devnull = false;
    for (size_t i = 0; i < cfg->log_outputs.n; i++) {
        devnull |= strcmp(cfg->log_outputs.v[i], "/dev/null") == 0;
    }
    for (size_t i = 0; i < cfg->log_outputs.n && n < LOG_MAX_OUTPUTS; i++) {
        const char *o = cfg->log_outputs.v[i];
        int fd;
        bool own = false;
        if (devnull && strcmp(o, "/dev/null") != 0) {
            continue; /* etcd: MergeOutputPaths keeps only /dev/null */
        }
        if (strcmp(o, "default") == 0 || strcmp(o, "stderr") == 0 ||
            strcmp(o, "systemd/journal") == 0) {
            fd = 2;
        } else if (strcmp(o, "stdout") == 0) {
            fd = 1;
        } else {
            fd = open(o, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
            if (fd < 0) {
                char eb[128];
                snprintf(err, errlen, "couldn't open sink \"%s\": open %s: %s",
                         o, o, config_go_strerror(errno, eb, sizeof(eb)));
                for (size_t k = 0; k < n; k++) {
                    if (owned[k]) {
                        close(fds[k]);
                    }
                }
                return -1;
            }
            own = true;
        }
        if (!own && has_fd(fds, n, fd)) {
            continue;
        }
        fds[n] = fd;
        owned[n] = own;
        n++;
    }
    if (n == 0) {
        fds[0] = 2;
        owned[0] = false;
        n = 1;
    }

    close_outputs();
    memcpy(L.fds, fds, n * sizeof(fds[0]));
    memcpy(L.owned, owned, n * sizeof(owned[0]));
    L.nfds = n;
    L.format = strcmp(cfg->logger, "zap") == 0 ? LOG_FORMAT_ZAP
                                               : LOG_FORMAT_CAPNSLOG;
    L.level = level;
    L.npkgs = 0;
    if (L.format == LOG_FORMAT_CAPNSLOG && cfg->log_package_levels[0] != '\0') {
        if (parse_pkg_levels(cfg->log_package_levels, &L.level) != 0) {
            log_warn("embed",
                     "couldn't parse log level string: %s, continuing with "
                     "default levels",
                     cfg->log_package_levels);
        }
    }
    return 0;
}

bool log_is_zap(void)
{
    return L.format == LOG_FORMAT_ZAP;
}

bool log_enabled(enum log_level level, const char *pkg)
{
    enum log_level min = L.level;
    if (L.format == LOG_FORMAT_CAPNSLOG && pkg != NULL) {
        for (size_t i = 0; i < L.npkgs; i++) {
            if (strcmp(L.pkgs[i].pkg, pkg) == 0) {
                min = L.pkgs[i].level;
                break;
            }
        }
    }
    if (L.format == LOG_FORMAT_ZAP && level == LOG_LEVEL_NOTICE) {
        level = LOG_LEVEL_INFO;
    }
    return level >= min;
}

void log_raw(const char *text)
{
    struct line l;
    line_init(&l);
    line_puts(&l, text);
    if (l.len == 0 || l.p[l.len - 1] != '\n') {
        line_add(&l, "\n", 1);
    }
    write_all(2, l.p, l.len);
    line_free(&l);
}

/* ------------------------------------------------------------------------ */

static const char *zap_level(enum log_level lv)
{
    switch (lv) {
    case LOG_LEVEL_DEBUG:
        return "debug";
    case LOG_LEVEL_INFO:
    case LOG_LEVEL_NOTICE:
        return "info";
    case LOG_LEVEL_WARN:
        return "warn";
    case LOG_LEVEL_ERROR:
        return "error";
    case LOG_LEVEL_PANIC:
        return "panic";
    default: /* CRITICAL, FATAL */
        return "fatal";
    }
}

static char capnslog_letter(enum log_level lv)
{
    static const char letters[] = "DINWECCC";
    return letters[lv];
}

/* "server/main.c" from a full __FILE__ path (zap's ShortCallerEncoder). */
static const char *short_caller(const char *file)
{
    const char *last = strrchr(file, '/');
    if (last == NULL) {
        return file;
    }
    const char *p = last;
    while (p > file && p[-1] != '/') {
        p--;
    }
    return p;
}

static void header(struct line *l, enum log_level level, const char *file,
                   int lineno, const char *pkg)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    time_t sec = tv.tv_sec;
    localtime_r(&sec, &tm);
    char ts[64];
    strftime(ts, sizeof(ts), "%Y-%m-%d", &tm);
    if (L.format == LOG_FORMAT_CAPNSLOG) {
        line_printf(l, "%s %02d:%02d:%02d.%06ld %c | %s: ", ts, tm.tm_hour,
                    tm.tm_min, tm.tm_sec, (long)tv.tv_usec,
                    capnslog_letter(level), pkg != NULL ? pkg : "keel");
        return;
    }
    char zone[16];
    long off = tm.tm_gmtoff;
    if (off == 0) {
        snprintf(zone, sizeof(zone), "Z");
    } else {
        long a = off < 0 ? -off : off;
        snprintf(zone, sizeof(zone), "%c%02d%02d", off < 0 ? '-' : '+',
                 (int)(a / 3600 % 100), (int)(a / 60 % 60));
    }
    line_printf(l,
                "{\"level\":\"%s\",\"ts\":\"%sT%02d:%02d:%02d.%03ld%s\","
                "\"caller\":",
                zap_level(level), ts, tm.tm_hour, tm.tm_min, tm.tm_sec,
                (long)(tv.tv_usec / 1000), zone);
    char caller[256];
    snprintf(caller, sizeof(caller), "%s:%d", short_caller(file), lineno);
    line_json_str(l, caller);
    line_puts(l, ",\"msg\":");
}

static void finish(enum log_level level, struct line *l)
{
    emit(l);
    line_free(l);
    if (level == LOG_LEVEL_FATAL) {
        exit(1);
    }
    if (level == LOG_LEVEL_PANIC) {
        abort();
    }
}

void log__printf(enum log_level level, const char *file, int lineno,
                 const char *pkg, const char *fmt, ...)
{
    if (!log_enabled(level, pkg)) {
        if (level == LOG_LEVEL_FATAL) {
            exit(1);
        }
        return;
    }
    struct line l;
    line_init(&l);
    header(&l, level, file, lineno, pkg);
    va_list ap;
    va_start(ap, fmt);
    if (L.format == LOG_FORMAT_CAPNSLOG) {
        line_vprintf(&l, fmt, ap);
    } else {
        struct line msg;
        line_init(&msg);
        line_vprintf(&msg, fmt, ap);
        while (msg.len > 0 && msg.p[msg.len - 1] == '\n') {
            msg.len--;
        }
        msg.p[msg.len] = '\0';
        line_json_str(&l, msg.p);
        line_free(&msg);
        line_add(&l, "}", 1);
    }
    va_end(ap);
    finish(level, &l);
}

static void field_value(struct line *l, const struct log_field *f, bool json)
{
    char buf[64];
    switch (f->type) {
    case LOG_FIELD_STR:
        if (json) {
            line_json_str(l, f->v.s);
        } else {
            line_puts(l, f->v.s != NULL ? f->v.s : "");
        }
        break;
    case LOG_FIELD_INT:
        line_printf(l, "%lld", (long long)f->v.i);
        break;
    case LOG_FIELD_UINT:
        line_printf(l, "%llu", (unsigned long long)f->v.u);
        break;
    case LOG_FIELD_BOOL:
        line_puts(l, f->v.b ? "true" : "false");
        break;
    case LOG_FIELD_DURATION:
        config_duration_str(f->v.i, buf, sizeof(buf));
        if (json) {
            line_json_str(l, buf);
        } else {
            line_puts(l, buf);
        }
        break;
    case LOG_FIELD_STRS:
        line_add(l, "[", 1);
        for (size_t i = 0; i < f->v.strs.n; i++) {
            if (i > 0) {
                line_add(l, ",", 1);
            }
            if (json) {
                line_json_str(l, f->v.strs.v[i]);
            } else {
                line_puts(l, f->v.strs.v[i]);
            }
        }
        line_add(l, "]", 1);
        break;
    }
}

void log__fields(enum log_level level, const char *file, int lineno,
                 const char *pkg, const char *msg,
                 const struct log_field *fields, size_t nfields)
{
    if (!log_enabled(level, pkg)) {
        if (level == LOG_LEVEL_FATAL) {
            exit(1);
        }
        return;
    }
    struct line l;
    line_init(&l);
    header(&l, level, file, lineno, pkg);
    if (L.format == LOG_FORMAT_CAPNSLOG) {
        line_puts(&l, msg);
        for (size_t i = 0; i < nfields; i++) {
            line_puts(&l, i == 0 ? " (" : ", ");
            line_puts(&l, fields[i].key);
            line_add(&l, "=", 1);
            field_value(&l, &fields[i], false);
        }
        if (nfields > 0) {
            line_add(&l, ")", 1);
        }
    } else {
        line_json_str(&l, msg);
        for (size_t i = 0; i < nfields; i++) {
            line_add(&l, ",", 1);
            line_json_str(&l, fields[i].key);
            line_add(&l, ":", 1);
            field_value(&l, &fields[i], true);
        }
        line_add(&l, "}", 1);
    }
    finish(level, &l);
}
