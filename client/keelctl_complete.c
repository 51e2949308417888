/*
 * keelctl's shell completion (see keelctl_complete.h). The `__complete`
 * answer follows cobra's getCompletions as etcdctl 3.4 runs it: find the
 * command from the words before the partial one, then complete a flag's
 * value (etcdctl registers no value completions: nothing), a flag name, or
 * a sub-command name. etcdctl has no dynamic completions (keys, lease ids,
 * members), so neither has keelctl.
 */
#include "keelctl_complete.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keelctl_help.h"

enum
{
    DIRECTIVE_DEFAULT = 0,
    DIRECTIVE_NO_FILE_COMP = 4,
};

int complete_script(const char *shell, int no_descriptions)
{
    for (const struct completion_script *s = completion_scripts; s->shell; s++) {
        if (strcmp(s->shell, shell) == 0 && s->no_descriptions == no_descriptions) {
            fputs(s->text, stdout);
            return 0;
        }
    }
    return -1;
}

static const struct help_cmd *cmd_at(const char *path)
{
    for (const struct help_cmd *c = help_cmds; c->path; c++) {
        if (strcmp(c->path, path) == 0) {
            return c;
        }
    }
    return NULL;
}

/* The child of `parent` named `word`, or NULL. */
static const struct help_cmd *child(const struct help_cmd *parent, const char *word)
{
    char path[128];
    snprintf(path, sizeof(path), "%s%s%s", parent->path, parent->path[0] ? " " : "",
             word);
    return cmd_at(path);
}

static int is_child(const struct help_cmd *parent, const struct help_cmd *c)
{
    size_t pl = strlen(parent->path);
    if (c == parent || c->path[0] == '\0') {
        return 0;
    }
    const char *rest = c->path;
    if (pl > 0) {
        if (strncmp(c->path, parent->path, pl) != 0 || c->path[pl] != ' ') {
            return 0;
        }
        rest = c->path + pl + 1;
    }
    return strchr(rest, ' ') == NULL;
}

/* The flags a command accepts, in cobra's completion order: the inherited
 * ones (the global flags and a group's persistent ones, sorted together by
 * name) and then its own. The root has no inherited flags: the global ones
 * are its own. Up to `max`; returns the count. */
static size_t cmd_flags(const struct help_cmd *c, const struct help_flag **out,
                        size_t max)
{
    size_t n = 0;
    if (c->path[0] != '\0') {
        const struct help_flag *a = help_global_flags, *b = c->inherited;
        while ((a->name || b->name) && n < max) {
            if (b->name == NULL || (a->name && strcmp(a->name, b->name) < 0)) {
                out[n++] = a++;
            } else {
                out[n++] = b++;
            }
        }
    }
    for (const struct help_flag *f = c->flags; f->name && n < max; f++) {
        out[n++] = f;
    }
    return n;
}

static const struct help_flag *find_flag(const struct help_cmd *c, const char *name,
                                         size_t namelen, int shorthand)
{
    const struct help_flag *all[128];
    size_t n = cmd_flags(c, all, 128);
    for (size_t i = 0; i < n; i++) {
        const char *fn = shorthand ? all[i]->shorthand : all[i]->name;
        if (strlen(fn) == namelen && strncmp(fn, name, namelen) == 0) {
            return all[i];
        }
    }
    return NULL;
}

/* pflag's flag syntax: "--name[=v]" or "-s[=v]" (not "-" nor "--"). */
static int is_flag_arg(const char *a)
{
    return (a[0] == '-' && a[1] == '-' && a[2] != '\0') ||
           (a[0] == '-' && a[1] != '-' && a[1] != '\0');
}

struct parsed
{
    const struct help_flag *changed[64];
    size_t nchanged;
    size_t npositional;
};

static int was_changed(const struct parsed *p, const struct help_flag *f)
{
    for (size_t i = 0; i < p->nchanged; i++) {
        if (p->changed[i] == f) {
            return 1;
        }
    }
    return 0;
}

/* Parses args as pflag does for command c: 0, or -1 with pflag's error in
 * err. Only short flags standing alone ("-w") are looked at as one flag. */
static int parse_args(const struct help_cmd *c, char **args, size_t n,
                      struct parsed *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        const char *a = args[i];
        if (strcmp(a, "--") == 0) {
            p->npositional += n - i - 1;
            break;
        }
        if (!is_flag_arg(a)) {
            p->npositional++;
            continue;
        }
        int lng = a[1] == '-';
        const char *name = a + (lng ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const struct help_flag *f = find_flag(c, name, lng ? nl : 1, !lng);
        if (f == NULL) {
            if (lng) {
                snprintf(err, errlen, "unknown flag: --%.*s", (int)nl, name);
            } else {
                snprintf(err, errlen, "unknown shorthand flag: '%c' in %s", name[0], a);
            }
            return -1;
        }
        if (!eq && !f->noopt && (lng || name[1] == '\0')) {
            if (i + 1 >= n) {
                snprintf(err, errlen, "flag needs an argument: %s", a);
                return -1;
            }
            i++; /* the value */
        }
        if (p->nchanged < sizeof(p->changed) / sizeof(p->changed[0])) {
            p->changed[p->nchanged++] = f;
        }
    }
    return 0;
}

/* cobra's Find from the root: the deepest command the leading words name,
 * flags skipped as stripFlags does. At the root a word that is no command
 * is an error (legacyArgs); below it, the rest are the command's args. */
static const struct help_cmd *find_cmd(char **args, size_t n, char **rest,
                                       size_t *nrest)
{
    const struct help_cmd *c = cmd_at("");
    *nrest = 0;
    int descending = 1;
    for (size_t i = 0; i < n; i++) {
        const char *a = args[i];
        if (descending && is_flag_arg(a)) {
            rest[(*nrest)++] = args[i];
            int lng = a[1] == '-';
            const char *name = a + (lng ? 2 : 1);
            const struct help_flag *f = strchr(a, '=') ? NULL :
                find_flag(c, name, lng ? strlen(name) : 1, !lng);
            if (f && !f->noopt && (lng || name[1] == '\0') && i + 1 < n) {
                rest[(*nrest)++] = args[++i];
            }
            continue;
        }
        const struct help_cmd *ch = descending ? child(c, a) : NULL;
        if (ch) {
            c = ch;
            continue;
        }
        if (c->path[0] == '\0') {
            return NULL;
        }
        descending = 0;
        rest[(*nrest)++] = args[i];
    }
    return c;
}

static void add(char ***comps, size_t *n, const char *name, const char *desc)
{
    char *s = malloc(strlen(name) + strlen(desc) + 2);
    if (s == NULL) {
        abort();
    }
    sprintf(s, "%s\t%s", name, desc);
    *comps = realloc(*comps, (*n + 1) * sizeof(char *));
    if (*comps == NULL) {
        abort();
    }
    (*comps)[(*n)++] = s;
}

static void add_children(const struct help_cmd *c, const char *prefix, char ***comps,
                         size_t *n)
{
    for (const struct help_cmd *k = help_cmds; k->path; k++) {
        if (!is_child(c, k)) {
            continue;
        }
        const char *name = strrchr(k->path, ' ');
        name = name ? name + 1 : k->path;
        if (strncmp(name, prefix, strlen(prefix)) == 0) {
            add(comps, n, name, k->short_desc);
        }
    }
}

static int has_children(const struct help_cmd *c)
{
    for (const struct help_cmd *k = help_cmds; k->path; k++) {
        if (is_child(c, k)) {
            return 1;
        }
    }
    return 0;
}

/* Go's %v of a []string: "[a b]". */
static void go_list(char *out, size_t len, char **args, size_t n)
{
    size_t o = (size_t)snprintf(out, len, "[");
    for (size_t i = 0; i < n && o < len; i++) {
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? " " : "", args[i]);
    }
    if (o < len) {
        snprintf(out + o, len - o, "]");
    }
}

/* The candidates and directive for args; an error cobra prints as
 * "[Error] ..." goes to err. */
static int get_completions(char **args, size_t nargs, char ***comps, size_t *n,
                           char *err, size_t errlen)
{
    const char *to_complete = args[nargs - 1];
    size_t ntrim = nargs - 1;
    char **rest = calloc(nargs + 1, sizeof(char *));
    if (rest == NULL) {
        abort();
    }
    size_t nrest;
    int directive = DIRECTIVE_DEFAULT;
    const struct help_cmd *c = find_cmd(args, ntrim, rest, &nrest);
    if (c == NULL) {
        char l[1024];
        go_list(l, sizeof(l), args, ntrim);
        snprintf(err, errlen, "Unable to find a command for arguments: %s", l);
        goto out;
    }

    /* checkIfFlagCompletion: is a flag's value being completed? */
    const struct help_flag *flag = NULL;
    int flag_err = 0;
    char flagname[128] = "";
    int flag_equal = 0;
    if (to_complete[0] == '-' && strchr(to_complete, '=')) {
        const char *eq = strchr(to_complete, '=');
        if (to_complete[1] == '-') {
            snprintf(flagname, sizeof(flagname), "%.*s", (int)(eq - to_complete - 2),
                     to_complete + 2);
        } else if (eq > to_complete + 1) {
            snprintf(flagname, sizeof(flagname), "%c", eq[-1]);
        }
        to_complete = eq + 1;
        flag_equal = 1;
    } else if (to_complete[0] != '-' && nrest > 0 && is_flag_arg(rest[nrest - 1]) &&
               !strchr(rest[nrest - 1], '=')) {
        const char *prev = rest[nrest - 1];
        snprintf(flagname, sizeof(flagname), "%s",
                 prev[1] == '-' ? prev + 2 : prev + strlen(prev) - 1);
    }
    if (flagname[0]) {
        int shorthand = strlen(flagname) == 1;
        flag = find_flag(c, flagname, strlen(flagname), shorthand);
        if (flag == NULL && shorthand) {
            flag = find_flag(c, flagname, 1, 0);
        }
        if (flag == NULL) {
            flag_err = 1;
        } else if (!flag_equal && flag->noopt) {
            flag = NULL; /* a bool: no value follows it */
        } else if (!flag_equal) {
            nrest--; /* the flag whose value is being completed */
        }
    }

    /* After "--" nothing is a flag: cobra then completes neither flag
     * names nor flag values (its flagCompletion is false). */
    int dashdash = 0;
    for (size_t i = 0; i < nrest; i++) {
        dashdash |= strcmp(rest[i], "--") == 0;
    }
    struct parsed p;
    char perr[512];
    if (parse_args(c, rest, nrest, &p, perr, sizeof(perr)) < 0) {
        char l[1024];
        go_list(l, sizeof(l), rest, nrest);
        snprintf(err, errlen, "Error while parsing flags from args %s: %s", l, perr);
        goto out;
    }
    if (flag_err && !dashdash) {
        const char *name = strrchr(c->path, ' ');
        name = name ? name + 1 : c->path[0] ? c->path : "etcdctl";
        snprintf(err, errlen, "Subcommand '%s' does not support flag '%s'", name,
                 flagname);
        goto out;
    }
    for (size_t i = 0; i < p.nchanged; i++) {
        if (strcmp(p.changed[i]->name, "help") == 0) {
            directive = DIRECTIVE_NO_FILE_COMP;
            goto out;
        }
    }
    if (flag && !dashdash) {
        goto out; /* etcdctl completes no flag values */
    }
    if (!dashdash && to_complete[0] == '-' && !strchr(to_complete, '=')) {
        const struct help_flag *all[128];
        size_t nf = cmd_flags(c, all, 128);
        for (size_t i = 0; i < nf; i++) {
            const struct help_flag *f = all[i];
            /* a given flag is offered again only when it is a list */
            if (was_changed(&p, f) && strcmp(f->name, "endpoints") != 0) {
                continue;
            }
            char nm[160];
            snprintf(nm, sizeof(nm), "--%s", f->name);
            if (strncmp(nm, to_complete, strlen(to_complete)) == 0) {
                add(comps, n, nm, f->usage);
            }
            snprintf(nm, sizeof(nm), "-%s", f->shorthand);
            if (f->shorthand[0] && strncmp(nm, to_complete, strlen(to_complete)) == 0) {
                add(comps, n, nm, f->usage);
            }
        }
        directive = DIRECTIVE_NO_FILE_COMP;
        goto out;
    }
    if (flag) {
        goto out;
    }
    if (p.npositional == 0 && has_children(c)) {
        add_children(c, to_complete, comps, n);
        directive = DIRECTIVE_NO_FILE_COMP;
    }
    if (strcmp(c->path, "help") == 0) {
        /* help completes the command names under its arguments */
        char **hrest = calloc(nrest + 1, sizeof(char *));
        size_t nh = 0;
        if (hrest == NULL) {
            abort();
        }
        for (size_t i = 0; i < nrest; i++) {
            if (!is_flag_arg(rest[i])) {
                hrest[nh++] = rest[i];
            }
        }
        char **hr = calloc(nh + 1, sizeof(char *));
        size_t nhr;
        const struct help_cmd *t = hr ? find_cmd(hrest, nh, hr, &nhr) : NULL;
        if (t) {
            add_children(t, to_complete, comps, n);
        }
        free(hr);
        free(hrest);
        directive = DIRECTIVE_NO_FILE_COMP;
    }
out:
    free(rest);
    return directive;
}

int complete_run(int nargs, char **args, int nodesc)
{
    char **comps = NULL;
    size_t n = 0;
    char err[2048] = "";
    int directive = get_completions(args, (size_t)nargs, &comps, &n, err, sizeof(err));
    if (err[0]) {
        /* cobra's CompErrorln goes through CompDebug, which tags it */
        fprintf(stderr, "[Debug] [Error] %s\n", err);
    }
    for (size_t i = 0; i < n; i++) {
        if (nodesc) {
            *strchr(comps[i], '\t') = '\0';
        }
        puts(comps[i]);
        free(comps[i]);
    }
    free(comps);
    printf(":%d\n", directive);
    fprintf(stderr, "Completion ended with directive: %s\n",
            directive == DIRECTIVE_NO_FILE_COMP ? "ShellCompDirectiveNoFileComp"
                                                : "ShellCompDirectiveDefault");
    return 0;
}
