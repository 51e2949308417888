/*
 * keelctl auth, user and role commands (etcd: etcdctl/ctlv3/command/
 * {auth,user,role}_command.go and the printers): one Auth RPC each, with
 * etcdctl's argument checks, messages and output formats. Passwords are
 * prompted for twice (echo off on a terminal) or, with --interactive=false,
 * read as one word from stdin.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "keelctl.h"

static struct flag no_flags[] = {{NULL, 0, 0, NULL, 0}};

/* One Auth call; dies like etcdctl on failure. */
static ProtobufCMessage *auth_call(struct keel_call *call, const char *path,
                                   const ProtobufCMessage *req,
                                   const ProtobufCMessageDescriptor *d)
{
    if (ctl_call(ctl_client(), call, path, req, d, 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(call));
    }
    return call->resp;
}

/* The header of any Auth response (field 1 in all of them). */
static const Etcdserverpb__ResponseHeader *hdr_of(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
                                                        "header");
    return f ? *(Etcdserverpb__ResponseHeader *const *)((const char *)m +
                                                        f->offset)
             : NULL;
}

/* Print a response the generic way; `simple` is the simple form, or NULL
 * when etcdctl's fields printer does not support the response. */
static void show(const ProtobufCMessage *m, const char *simple,
                 int fields_ok)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            fputs(simple, stdout);
            break;
        case FMT_JSON:
            print_json_msg(m);
            break;
        case FMT_PROTOBUF:
            print_protobuf(m);
            break;
        case FMT_FIELDS:
            if (!fields_ok) {
                ctl_unsupported_format();
            }
            fields_hdr(hdr_of(m));
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *out = NULL;
    if (vasprintf(&out, f, ap) < 0) {
        ctl_die(EXIT_ERROR, "out of memory");
    }
    va_end(ap);
    char *copy = ctl_strdup(out);
    free(out);
    return copy;
}

/* ---- auth ------------------------------------------------------------------ */

static void auth_enable_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS,
                "auth enable command does not accept any arguments");
    }
    /* etcd: authEnableCommandFunc adds the root role when it is missing. */
    for (;;) {
        struct keel_call call;
        Etcdserverpb__AuthEnableRequest req =
            ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
        int st = ctl_call(ctl_client(), &call, KEEL_M_AUTH_ENABLE, &req.base,
                          &etcdserverpb__auth_enable_response__descriptor, 0);
        if (st == KEEL_GRPC_OK) {
            keel_call_cleanup(&call);
            break;
        }
        if (strcmp(call.message, keel_strerror(KEEL_EROOTROLENOTEXIST)) != 0) {
            ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
        }
        keel_call_cleanup(&call);
        Etcdserverpb__AuthRoleAddRequest ra =
            ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
        ra.name = "root";
        auth_call(&call, KEEL_M_ROLE_ADD, &ra.base,
                  &etcdserverpb__auth_role_add_response__descriptor);
        keel_call_cleanup(&call);
        Etcdserverpb__AuthUserGrantRoleRequest gr =
            ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
        gr.user = "root";
        gr.role = "root";
        auth_call(&call, KEEL_M_USER_GRANT_ROLE, &gr.base,
                  &etcdserverpb__auth_user_grant_role_response__descriptor);
        keel_call_cleanup(&call);
    }
    printf("Authentication Enabled\n");
}

static void auth_disable_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS,
                "auth disable command does not accept any arguments");
    }
    struct keel_call call;
    Etcdserverpb__AuthDisableRequest req =
        ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
    auth_call(&call, KEEL_M_AUTH_DISABLE, &req.base,
              &etcdserverpb__auth_disable_response__descriptor);
    keel_call_cleanup(&call);
    printf("Authentication Disabled\n");
}

/* ---- user ------------------------------------------------------------------ */

static char *ask(const char *prompt)
{
    printf("%s", prompt);
    fflush(stdout);
    struct termios old, quiet;
    int tty = isatty(0) && tcgetattr(0, &old) == 0;
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    char line[256] = "";
    if (fgets(line, sizeof(line), stdin) == NULL) {
        line[0] = '\0';
    }
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
    }
    printf("\n");
    line[strcspn(line, "\r\n")] = '\0';
    return ctl_strdup(line);
}

/* etcd: readPasswordInteractive in user_command.go */
static char *read_password_interactive(const char *name)
{
    char *p1 = ask(fmt("Password of %s: ", name));
    if (p1[0] == '\0') {
        ctl_die(EXIT_BAD_ARGS, "empty password");
    }
    char *p2 = ask(fmt("Type password of %s again for confirmation: ", name));
    if (strcmp(p1, p2) != 0) {
        ctl_die(EXIT_BAD_ARGS, "given passwords are different");
    }
    return p1;
}

static char *read_password_word(void)
{
    char word[256] = "";
    if (scanf("%255s", word) != 1) {
        word[0] = '\0';
    }
    return ctl_strdup(word);
}

static int user_interactive = 1, user_no_password, user_detail;
static const char *user_new_password = "";
static struct flag user_add_flags[] = {
    {"interactive", 0, F_BOOL, &user_interactive, 0},
    {"new-user-password", 0, F_STRING, &user_new_password, 0},
    {"no-password", 0, F_BOOL, &user_no_password, 0},
    {NULL, 0, 0, NULL, 0},
};
static struct flag user_get_flags[] = {
    {"detail", 0, F_BOOL, &user_detail, 0},
    {NULL, 0, 0, NULL, 0},
};

static void user_add_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "user add command requires user name as its argument");
    }
    Etcdserverpb__AuthUserAddRequest req =
        ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions opts = AUTHPB__USER_ADD_OPTIONS__INIT;
    const char *user = argv[0], *password = "";
    if (user_no_password) {
        opts.no_password = 1;
    } else if (user_new_password[0]) {
        password = user_new_password;
    } else {
        const char *colon = strchr(argv[0], ':');
        if (colon == NULL) {
            password = user_interactive ? read_password_interactive(argv[0])
                                        : read_password_word();
        } else {
            user = ctl_strndup(argv[0], (size_t)(colon - argv[0]));
            password = colon + 1;
            if (user[0] == '\0') {
                ctl_die(EXIT_BAD_ARGS, "empty user name is not allowed");
            }
        }
    }
    req.name = (char *)user;
    req.password = (char *)password;
    req.options = &opts;
    struct keel_call call;
    ProtobufCMessage *r =
        auth_call(&call, KEEL_M_USER_ADD, &req.base,
                  &etcdserverpb__auth_user_add_response__descriptor);
    show(r, fmt("User %s created\n", user), 1);
    keel_call_cleanup(&call);
}

static struct flag user_passwd_flags[] = {
    {"interactive", 0, F_BOOL, &user_interactive, 0},
    {NULL, 0, 0, NULL, 0},
};

static void user_passwd_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "user passwd command requires user name as its argument");
    }
    Etcdserverpb__AuthUserChangePasswordRequest req =
        ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
    req.name = argv[0];
    req.password = user_interactive ? read_password_interactive(argv[0])
                                    : read_password_word();
    struct keel_call call;
    ProtobufCMessage *r = auth_call(
        &call, KEEL_M_USER_CHANGE_PASSWORD, &req.base,
        &etcdserverpb__auth_user_change_password_response__descriptor);
    show(r, "Password updated\n", 1);
    keel_call_cleanup(&call);
}

static void user_delete_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "user delete command requires user name as its argument");
    }
    Etcdserverpb__AuthUserDeleteRequest req =
        ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    req.name = argv[0];
    struct keel_call call;
    ProtobufCMessage *r =
        auth_call(&call, KEEL_M_USER_DELETE, &req.base,
                  &etcdserverpb__auth_user_delete_response__descriptor);
    show(r, fmt("User %s deleted\n", argv[0]), 1);
    keel_call_cleanup(&call);
}

static void print_role_get(const char *role,
                           const Etcdserverpb__AuthRoleGetResponse *r);

static void user_get_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "user get command requires user name as its argument");
    }
    Etcdserverpb__AuthUserGetRequest req =
        ETCDSERVERPB__AUTH_USER_GET_REQUEST__INIT;
    req.name = argv[0];
    struct keel_call call;
    Etcdserverpb__AuthUserGetResponse *r = (void *)auth_call(
        &call, KEEL_M_USER_GET, &req.base,
        &etcdserverpb__auth_user_get_response__descriptor);
    if (user_detail) {
        printf("User: %s\n", argv[0]);
        for (size_t i = 0; i < r->n_roles; i++) {
            printf("\n");
            Etcdserverpb__AuthRoleGetRequest rr =
                ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
            rr.role = r->roles[i];
            struct keel_call rc;
            print_role_get(r->roles[i], (void *)auth_call(
                                            &rc, KEEL_M_ROLE_GET, &rr.base,
                                            &etcdserverpb__auth_role_get_response__descriptor));
            keel_call_cleanup(&rc);
        }
    } else if (ctl_fmt == FMT_SIMPLE) {
        printf("User: %s\nRoles:", argv[0]);
        for (size_t i = 0; i < r->n_roles; i++) {
            printf(" %s", r->roles[i]);
        }
        printf("\n");
    } else {
        show(&r->base, "", 0);
    }
    keel_call_cleanup(&call);
}

static void user_list_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS, "user list command requires no arguments");
    }
    Etcdserverpb__AuthUserListRequest req =
        ETCDSERVERPB__AUTH_USER_LIST_REQUEST__INIT;
    struct keel_call call;
    Etcdserverpb__AuthUserListResponse *r = (void *)auth_call(
        &call, KEEL_M_USER_LIST, &req.base,
        &etcdserverpb__auth_user_list_response__descriptor);
    if (ctl_fmt == FMT_SIMPLE) {
        for (size_t i = 0; i < r->n_users; i++) {
            printf("%s\n", r->users[i]);
        }
    } else {
        show(&r->base, "", 0);
    }
    keel_call_cleanup(&call);
}

static void user_role_run(int argc, char **argv, int grant)
{
    if (argc != 2) {
        ctl_die(EXIT_BAD_ARGS,
                grant ? "user grant command requires user name and role name "
                        "as its argument"
                      : "user revoke-role requires user name and role name as "
                        "its argument");
    }
    struct keel_call call;
    ProtobufCMessage *r;
    if (grant) {
        Etcdserverpb__AuthUserGrantRoleRequest req =
            ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
        req.user = argv[0];
        req.role = argv[1];
        r = auth_call(&call, KEEL_M_USER_GRANT_ROLE, &req.base,
                      &etcdserverpb__auth_user_grant_role_response__descriptor);
    } else {
        Etcdserverpb__AuthUserRevokeRoleRequest req =
            ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
        req.name = argv[0];
        req.role = argv[1];
        r = auth_call(&call, KEEL_M_USER_REVOKE_ROLE, &req.base,
                      &etcdserverpb__auth_user_revoke_role_response__descriptor);
    }
    show(r,
         grant ? fmt("Role %s is granted to user %s\n", argv[1], argv[0])
               : fmt("Role %s is revoked from user %s\n", argv[1], argv[0]),
         1);
    keel_call_cleanup(&call);
}

static void user_grant_run(int argc, char **argv)
{
    user_role_run(argc, argv, 1);
}

static void user_revoke_run(int argc, char **argv)
{
    user_role_run(argc, argv, 0);
}

/* ---- role ------------------------------------------------------------------ */

static int perm_prefix, perm_from_key;
static struct flag perm_flags[] = {
    {"prefix", 0, F_BOOL, &perm_prefix, 0},
    {"from-key", 0, F_BOOL, &perm_from_key, 0},
    {NULL, 0, 0, NULL, 0},
};

static void role_simple_run(int argc, char **argv, int add)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, add ? "role add command requires role name as "
                                     "its argument"
                                   : "role delete command requires role name "
                                     "as its argument");
    }
    struct keel_call call;
    ProtobufCMessage *r;
    if (add) {
        Etcdserverpb__AuthRoleAddRequest req =
            ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
        req.name = argv[0];
        r = auth_call(&call, KEEL_M_ROLE_ADD, &req.base,
                      &etcdserverpb__auth_role_add_response__descriptor);
    } else {
        Etcdserverpb__AuthRoleDeleteRequest req =
            ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
        req.role = argv[0];
        r = auth_call(&call, KEEL_M_ROLE_DELETE, &req.base,
                      &etcdserverpb__auth_role_delete_response__descriptor);
    }
    show(r, fmt("Role %s %s\n", argv[0], add ? "created" : "deleted"), 1);
    keel_call_cleanup(&call);
}

static void role_add_run(int argc, char **argv)
{
    role_simple_run(argc, argv, 1);
}

static void role_delete_run(int argc, char **argv)
{
    role_simple_run(argc, argv, 0);
}

static void raw(const ProtobufCBinaryData *b)
{
    if (b->len > 0) {
        fwrite(b->data, 1, b->len, stdout);
    }
}

static void print_perm_range(const Authpb__Permission *p)
{
    /* Raw bytes: an open-ended key is "\x00" and etcdctl prints it. */
    int open_ended = p->range_end.len == 1 && p->range_end.data[0] == 0;
    printf("\t[");
    raw(&p->key);
    printf(", ");
    if (!open_ended) {
        raw(&p->range_end);
        printf(")");
    } else {
        printf("<open ended>");
    }
    char *pe = ctl_alloc(p->key.len + 2);
    size_t pl = keel_prefix_end((const char *)p->key.data, p->key.len, pe);
    if (pl == p->range_end.len && memcmp(pe, p->range_end.data, pl) == 0) {
        printf(" (prefix ");
        raw(&p->key);
        printf(")");
    }
    printf("\n");
}

/* etcd: simplePrinter.RoleGet */
static void print_role_get(const char *role,
                           const Etcdserverpb__AuthRoleGetResponse *r)
{
    if (ctl_fmt != FMT_SIMPLE) {
        if (ctl_fmt == FMT_FIELDS) {
            static const char *const types[] = {"READ", "WRITE", "READWRITE"};
            fields_hdr(r->header);
            for (size_t i = 0; i < r->n_perm; i++) {
                const Authpb__Permission *p = r->perm[i];
                printf("\"PermType\" :  %s\n\"Key\" : ",
                       (unsigned)p->permtype < 3 ? types[p->permtype] : "?");
                go_quote(stdout, p->key.data, p->key.len);
                printf("\n\"RangeEnd\" : ");
                go_quote(stdout, p->range_end.data, p->range_end.len);
                printf("\n");
            }
            return;
        }
        show(&r->base, "", 1);
        return;
    }
    printf("Role %s\nKV Read:\n", role);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            printf("KV Write:\n");
        }
        int want = pass == 0 ? AUTHPB__PERMISSION__TYPE__READ
                             : AUTHPB__PERMISSION__TYPE__WRITE;
        for (size_t i = 0; i < r->n_perm; i++) {
            const Authpb__Permission *p = r->perm[i];
            if ((int)p->permtype != want &&
                p->permtype != AUTHPB__PERMISSION__TYPE__READWRITE) {
                continue;
            }
            if (p->range_end.len == 0) {
                printf("\t%.*s\n", (int)p->key.len, (const char *)p->key.data);
            } else {
                print_perm_range(p);
            }
        }
    }
}

static void role_get_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "role get command requires role name as its argument");
    }
    Etcdserverpb__AuthRoleGetRequest req =
        ETCDSERVERPB__AUTH_ROLE_GET_REQUEST__INIT;
    req.role = argv[0];
    struct keel_call call;
    print_role_get(argv[0], (void *)auth_call(
                                &call, KEEL_M_ROLE_GET, &req.base,
                                &etcdserverpb__auth_role_get_response__descriptor));
    keel_call_cleanup(&call);
}

static void role_list_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS, "role list command requires no arguments");
    }
    Etcdserverpb__AuthRoleListRequest req =
        ETCDSERVERPB__AUTH_ROLE_LIST_REQUEST__INIT;
    struct keel_call call;
    Etcdserverpb__AuthRoleListResponse *r = (void *)auth_call(
        &call, KEEL_M_ROLE_LIST, &req.base,
        &etcdserverpb__auth_role_list_response__descriptor);
    if (ctl_fmt == FMT_SIMPLE) {
        for (size_t i = 0; i < r->n_roles; i++) {
            printf("%s\n", r->roles[i]);
        }
    } else if (ctl_fmt == FMT_FIELDS) {
        fields_hdr(r->header);
        printf("\"Roles\" :");
        for (size_t i = 0; i < r->n_roles; i++) {
            printf(" ");
            go_quote(stdout, (const uint8_t *)r->roles[i],
                     strlen(r->roles[i]));
        }
        printf("\n");
    } else {
        show(&r->base, "", 1);
    }
    keel_call_cleanup(&call);
}

/* etcd: permRange / rangeEndFromPermFlags in role_command.go */
static void perm_range(int argc, char **argv, const char **key,
                       const char **end)
{
    *key = argv[0];
    *end = "";
    if (argv[0][0] == '\0') {
        if (perm_prefix && perm_from_key) {
            ctl_die(EXIT_BAD_ARGS,
                    "--from-key and --prefix flags are mutually exclusive");
        }
        *key = "\x01"; /* placeholder, see below */
        return;
    }
    if (argc == 1) {
        if (perm_prefix) {
            if (perm_from_key) {
                ctl_die(EXIT_BAD_ARGS, "--from-key and --prefix flags are "
                                       "mutually exclusive");
            }
            char *pe = ctl_alloc(strlen(argv[0]) + 2);
            size_t n = keel_prefix_end(argv[0], strlen(argv[0]), pe);
            pe[n] = '\0';
            *end = pe;
        } else if (perm_from_key) {
            *end = "\x01"; /* "\x00", see below */
        }
        return;
    }
    if (perm_prefix) {
        ctl_die(EXIT_BAD_ARGS, "unexpected endkey argument with --prefix flag");
    }
    if (perm_from_key) {
        ctl_die(EXIT_BAD_ARGS,
                "unexpected endkey argument with --from-key flag");
    }
    *end = argv[1];
}

/* "\x01" above stands for the one-byte string "\x00". */
static void set_perm_bytes(ProtobufCBinaryData *b, const char *s)
{
    static uint8_t zero = 0;
    if (strcmp(s, "\x01") == 0) {
        b->data = &zero;
        b->len = 1;
    } else {
        b->data = (uint8_t *)s;
        b->len = strlen(s);
    }
}

static void role_grant_run(int argc, char **argv)
{
    if (argc < 3) {
        ctl_die(EXIT_BAD_ARGS, "role grant command requires role name, "
                               "permission type, and key [endkey] as its "
                               "argument");
    }
    int type;
    if (strcasecmp(argv[1], "READ") == 0) {
        type = AUTHPB__PERMISSION__TYPE__READ;
    } else if (strcasecmp(argv[1], "WRITE") == 0) {
        type = AUTHPB__PERMISSION__TYPE__WRITE;
    } else if (strcasecmp(argv[1], "READWRITE") == 0) {
        type = AUTHPB__PERMISSION__TYPE__READWRITE;
    } else {
        ctl_die(EXIT_BAD_ARGS, "invalid permission type: %s", argv[1]);
    }
    const char *key, *end;
    perm_range(argc - 2, argv + 2, &key, &end);
    if (argv[2][0] == '\0') {
        end = perm_prefix || perm_from_key ? "\x01" : "";
    }
    Authpb__Permission perm = AUTHPB__PERMISSION__INIT;
    perm.permtype = type;
    set_perm_bytes(&perm.key, key);
    set_perm_bytes(&perm.range_end, end);
    Etcdserverpb__AuthRoleGrantPermissionRequest req =
        ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
    req.name = argv[0];
    req.perm = &perm;
    struct keel_call call;
    ProtobufCMessage *r = auth_call(
        &call, KEEL_M_ROLE_GRANT_PERMISSION, &req.base,
        &etcdserverpb__auth_role_grant_permission_response__descriptor);
    show(r, fmt("Role %s updated\n", argv[0]), 1);
    keel_call_cleanup(&call);
}

static void role_revoke_run(int argc, char **argv)
{
    if (argc < 2) {
        ctl_die(EXIT_BAD_ARGS, "role revoke-permission command requires role "
                               "name and key [endkey] as its argument");
    }
    const char *key, *end;
    perm_range(argc - 1, argv + 1, &key, &end);
    if (argv[1][0] == '\0') {
        end = perm_prefix || perm_from_key ? "\x01" : "";
    }
    Etcdserverpb__AuthRoleRevokePermissionRequest req =
        ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
    req.role = argv[0];
    set_perm_bytes(&req.key, key);
    set_perm_bytes(&req.range_end, end);
    struct keel_call call;
    ProtobufCMessage *r = auth_call(
        &call, KEEL_M_ROLE_REVOKE_PERMISSION, &req.base,
        &etcdserverpb__auth_role_revoke_permission_response__descriptor);
    const char *k = argv[1];
    char *simple;
    if (end[0] == '\0') {
        simple = fmt("Permission of key %s is revoked from role %s\n", k,
                     argv[0]);
    } else if (strcmp(end, "\x01") != 0) {
        simple = fmt("Permission of range [%s, %s) is revoked from role %s\n",
                     k, end, argv[0]);
    } else {
        simple = fmt("Permission of range [%s, <open ended> is revoked from "
                     "role %s\n",
                     k, argv[0]);
    }
    show(r, simple, 1);
    keel_call_cleanup(&call);
}

const struct ctl_cmd ctl_auth_cmds[] = {
    {"auth enable", no_flags, auth_enable_run},
    {"auth disable", no_flags, auth_disable_run},
    {"user add", user_add_flags, user_add_run},
    {"user delete", no_flags, user_delete_run},
    {"user passwd", user_passwd_flags, user_passwd_run},
    {"user get", user_get_flags, user_get_run},
    {"user list", no_flags, user_list_run},
    {"user grant-role", no_flags, user_grant_run},
    {"user revoke-role", no_flags, user_revoke_run},
    {"role add", no_flags, role_add_run},
    {"role delete", no_flags, role_delete_run},
    {"role get", no_flags, role_get_run},
    {"role list", no_flags, role_list_run},
    {"role grant-permission", perm_flags, role_grant_run},
    {"role revoke-permission", perm_flags, role_revoke_run},
    {NULL, NULL, NULL},
};
