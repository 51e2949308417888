/*
 * keelctl help rendering: etcdctl's usage template (etcdctl/ctlv3/help.go
 * commandUsage and etcdFlagUsages) written into a small text/tabwriter
 * (minwidth 0, tabwidth 8, padding 1, tab padding) so that the columns
 * come out with the same tabs as etcdctl's.
 */
#include "keelctl_help.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set while printing cobra's "Unknown help topic" usage. */
static int skip_help_flag;

/* ---- a text/tabwriter with '\t' padding -------------------------------- */

struct tw
{
    char **lines;
    size_t n, cap;
};

static void tw_add(struct tw *t, const char *line)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 128;
        t->lines = realloc(t->lines, t->cap * sizeof(*t->lines));
        if (t->lines == NULL) {
            abort();
        }
    }
    t->lines[t->n++] = strdup(line);
}

/* Cells of a line: the tab-terminated ones, then the rest. */
static size_t cells(const char *line)
{
    size_t n = 1;
    for (const char *p = line; *p; p++) {
        n += *p == '\t';
    }
    return n;
}

static size_t cell_width(const char *line, size_t col)
{
    const char *p = line;
    for (size_t i = 0; i < col; i++) {
        p = strchr(p, '\t') + 1;
    }
    size_t w = 0;
    for (; *p && *p != '\t'; p++) {
        /* UTF-8: count code points, as tabwriter counts runes */
        w += ((unsigned char)*p & 0xC0) != 0x80;
    }
    return w;
}

static void write_lines(struct tw *t, size_t from, size_t to,
                        const size_t *widths, size_t nw)
{
    for (size_t i = from; i < to; i++) {
        const char *p = t->lines[i];
        for (size_t col = 0;; col++) {
            const char *tab = strchr(p, '\t');
            if (tab == NULL) {
                fputs(p, stdout);
                break;
            }
            fwrite(p, 1, (size_t)(tab - p), stdout);
            if (col < nw) {
                size_t tw8 = (widths[col] + 7) / 8 * 8;
                size_t textw = cell_width(t->lines[i], col);
                size_t pad = tw8 - textw;
                for (size_t k = 0; k < (pad + 7) / 8; k++) {
                    fputc('\t', stdout);
                }
            }
            p = tab + 1;
        }
        fputc('\n', stdout);
    }
}

/* Go's tabwriter format(): column blocks of consecutive lines that have a
 * cell in this column, each aligned on its widest cell + padding. */
static void format(struct tw *t, size_t line0, size_t line1, size_t *widths,
                   size_t nw)
{
    size_t col = nw;
    size_t this = line0;
    while (this < line1) {
        if (col + 1 >= cells(t->lines[this])) {
            this++;
            continue;
        }
        write_lines(t, line0, this, widths, nw);
        line0 = this;
        size_t width = 0;
        for (; this < line1 && col + 1 < cells(t->lines[this]); this++) {
            size_t w = cell_width(t->lines[this], col) + 1;
            if (w > width) {
                width = w;
            }
        }
        widths[nw] = width;
        format(t, line0, this, widths, nw + 1);
        line0 = this;
    }
    write_lines(t, line0, line1, widths, nw);
}

static void tw_flush(struct tw *t)
{
    size_t widths[16];
    format(t, 0, t->n, widths, 0);
    for (size_t i = 0; i < t->n; i++) {
        free(t->lines[i]);
    }
    free(t->lines);
    t->lines = NULL;
    t->n = t->cap = 0;
}

/* ---- the template -------------------------------------------------------- */

/* keelctl's own commands (etcdctl 3.4's v3 mode has none of them): found
 * by help, not listed in etcdctl's command list. */
static const struct help_flag backup_help_flags[] = {
    {"", "backup-dir", "\"\"", 0, "Path to the backup dir"},
    {"", "backup-wal-dir", "\"\"", 0,
     "Path to the backup wal dir (not supported: keel keeps the WAL in the "
     "data dir)"},
    {"", "data-dir", "\"\"", 0, "Path to the keel data dir"},
    {"h", "help", "false", 1, "help for backup"},
    {"", "wal-dir", "\"\"", 0,
     "Path to the etcd wal dir (not supported: keel keeps the WAL in the "
     "data dir)"},
    {"", "with-v3", "false", 1, "Backup v3 backend data (always, for keel)"},
    {NULL, NULL, NULL, 0, NULL}};
static const struct help_flag no_help_flags[] = {{NULL, NULL, NULL, 0, NULL}};
static const struct help_cmd keelctl_cmds[] = {
    {"backup", "backup a keel data directory", "backup [options] [flags]",
     "A consistent copy of --data-dir's store (the member may be running),\n"
     "made into a new single-member cluster with new member and cluster ids,\n"
     "as etcdctl backup (ETCDCTL_API=2) does for an etcd data dir.",
     backup_help_flags, no_help_flags},
    {NULL, NULL, NULL, NULL, NULL, NULL}};

static const struct help_cmd *find(const char *path)
{
    for (const struct help_cmd *c = help_cmds; c->path; c++) {
        if (strcmp(c->path, path) == 0) {
            return c;
        }
    }
    for (const struct help_cmd *c = keelctl_cmds; c->path; c++) {
        if (strcmp(c->path, path) == 0) {
            return c;
        }
    }
    return NULL;
}

/* A child of `path` (any depth) when its path starts with "path ". */
static int is_under(const char *child, const char *path)
{
    size_t l = strlen(path);
    if (l == 0) {
        return child[0] != 0;
    }
    return strncmp(child, path, l) == 0 && child[l] == ' ';
}

int help_print_without_help_flag(const char *path)
{
    skip_help_flag = 1;
    int rv = help_print(path);
    skip_help_flag = 0;
    return rv;
}

int help_print_exists(const char *path)
{
    return find(path) != NULL;
}

int help_is_group(const char *path)
{
    for (const struct help_cmd *c = help_cmds; c->path; c++) {
        if (is_under(c->path, path)) {
            return 1;
        }
    }
    return 0;
}

/* etcdFlagUsages' line for one flag. */
static void add_flag(struct tw *t, const struct help_flag *f)
{
    char line[1024], sh[8] = "      ";
    if (f->shorthand[0]) {
        snprintf(sh, sizeof(sh), "  -%s, ", f->shorthand);
    }
    snprintf(line, sizeof(line), "%s--%s%s=%s%s\t%s", sh, f->name,
             f->noopt ? "[" : "", f->def, f->noopt ? "]" : "", f->usage);
    tw_add(t, line);
}

static void add_flags(struct tw *t, const struct help_flag *f)
{
    for (; f->name; f++) {
        if (!(skip_help_flag && strcmp(f->name, "help") == 0)) {
            add_flag(t, f);
        }
    }
}

static int cmp_flag(const void *a, const void *b)
{
    return strcmp((*(const struct help_flag *const *)a)->name,
                  (*(const struct help_flag *const *)b)->name);
}

int help_print(const char *path)
{
    const struct help_cmd *c = find(path);
    if (c == NULL) {
        return -1;
    }
    int root = path[0] == 0;
    int group = help_is_group(path);
    struct tw t = {0};
    char line[2048];
    tw_add(&t, "NAME:");
    snprintf(line, sizeof(line), "\t%s - %s", root ? "etcdctl" : c->path,
             c->short_desc);
    tw_add(&t, line);
    tw_add(&t, "");
    tw_add(&t, "USAGE:");
    {
        /* cobra's UseLine: the parent's command path, then Use */
        char parent[256] = "etcdctl";
        const char *sp = strrchr(c->path, ' ');
        if (sp != NULL) {
            snprintf(parent, sizeof(parent), "etcdctl %.*s",
                     (int)(sp - c->path), c->path);
        }
        snprintf(line, sizeof(line), "\t%s %s", parent, c->use);
    }
    tw_add(&t, line);
    if (root) {
        tw_add(&t, "");
        tw_add(&t, "VERSION:");
        tw_add(&t, "\t3.4.23");
    }
    if (group) {
        tw_add(&t, "");
        tw_add(&t, "API VERSION:");
        tw_add(&t, "\t3.4");
        tw_add(&t, "");
        tw_add(&t, "");
        tw_add(&t, "COMMANDS:");
        size_t pl = strlen(path);
        for (const struct help_cmd *s = help_cmds; s->path; s++) {
            /* runnable sub-commands: the leaves */
            if (is_under(s->path, path) && !help_is_group(s->path)) {
                snprintf(line, sizeof(line), "\t%s\t%s",
                         s->path + (pl ? pl + 1 : 0), s->short_desc);
                tw_add(&t, line);
            }
        }
    }
    if (c->long_desc[0]) {
        tw_add(&t, "");
        tw_add(&t, "DESCRIPTION:");
        const char *p = c->long_desc;
        while (*p) {
            size_t l = strcspn(p, "\n");
            snprintf(line, sizeof(line), "\t%.*s", (int)l, p);
            tw_add(&t, line);
            p += l + (p[l] == '\n');
        }
    }
    if (c->flags[0].name) {
        tw_add(&t, "");
        tw_add(&t, "OPTIONS:");
        add_flags(&t, c->flags);
    }
    if (!root) {
        tw_add(&t, "");
        tw_add(&t, "GLOBAL OPTIONS:");
        /* pflag lists them sorted by name */
        const struct help_flag *all[64];
        size_t n = 0;
        for (const struct help_flag *f = help_global_flags; f->name && n < 63;
             f++) {
            all[n++] = f;
        }
        for (const struct help_flag *f = c->inherited; f->name && n < 63;
             f++) {
            all[n++] = f;
        }
        qsort(all, n, sizeof(all[0]), cmp_flag);
        for (size_t i = 0; i < n; i++) {
            add_flag(&t, all[i]);
        }
    }
    tw_add(&t, "");
    tw_flush(&t);
    return 0;
}
