/*
 * keelctl's help: etcdctl 3.4's command and flag texts (generated into
 * keelctl_help_data.c by tools/gen_keelctl_help.py) and the renderer that
 * formats them as etcdctl's cobra template and tabwriter do
 * (etcdctl/ctlv3/help.go).
 */
#ifndef KEELCTL_HELP_H
#define KEELCTL_HELP_H

#include <stddef.h>

struct help_flag
{
    const char *shorthand; /* "" when none */
    const char *name;
    const char *def;       /* the default as etcdctl shows it, quoted for strings */
    int noopt;             /* a bool: shown as --name[=default] */
    const char *usage;
};

struct help_cmd
{
    const char *path;  /* "" for the root, "lease grant" */
    const char *short_desc;
    const char *use;   /* the use line after the parent's path:
                          "grant <ttl> [flags]" */
    const char *long_desc; /* "" when none */
    const struct help_flag *flags; /* local flags, {NULL} terminated */
    const struct help_flag *inherited; /* from a group, besides the global
                                          ones (endpoint --cluster) */
};

extern const struct help_cmd help_cmds[];
extern const struct help_flag *const help_global_flags;

/* The help of the command at `path` ("" = etcdctl's) on stdout. 0, or -1
 * when there is no such command. */
int help_print(const char *path);

/* The same without the -h/--help flag line (cobra's "Unknown help topic"
 * usage). */
int help_print_without_help_flag(const char *path);

/* Whether etcdctl has a command at `path`. */
int help_print_exists(const char *path);

/* Whether `path` names a command group ("lease", "completion", ...). */
int help_is_group(const char *path);

#endif /* KEELCTL_HELP_H */
