/*
 * keelctl's shell completion, as etcdctl 3.4's cobra has it: the
 * `completion <shell>` scripts (generated into keelctl_completion_data.c by
 * tools/gen_keelctl_help.py --completion) and the hidden `__complete` /
 * `__completeNoDesc` commands those scripts call back, answered from the
 * help tables (keelctl_help_data.c).
 */
#ifndef KEELCTL_COMPLETE_H
#define KEELCTL_COMPLETE_H

#include <stddef.h>

struct completion_script
{
    const char *shell;  /* "bash", "fish", "powershell", "zsh" */
    int no_descriptions; /* the script for --no-descriptions */
    const char *text;
};

extern const struct completion_script completion_scripts[];

/* `__complete args...` (nodesc: `__completeNoDesc`): candidates, ":N" on
 * stdout, the directive's name on stderr. Returns the exit code. */
int complete_run(int nargs, char **args, int nodesc);

/* The script of `completion <shell> [--no-descriptions]` on stdout. -1
 * when there is no such shell. */
int complete_script(const char *shell, int no_descriptions);

#endif /* KEELCTL_COMPLETE_H */
