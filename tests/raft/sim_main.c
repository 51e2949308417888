/*
 * keel-raft-sim: run the raft simulator over seeds (soak) or replay one.
 *
 *   keel-raft-sim --seed S [--seeds N] [--members M] [--steps K]
 *                 [--faults all|none|drop,dup,...] [--bug N] [--trace]
 *
 * --members 0 (the default) picks 1, 3, 5 or 7 per seed. Exits 1 on the
 * first violation, after printing it with the command that replays it.
 * --bug N turns on a deliberately broken rule (enum raft_test_bug) to see
 * the simulator catch it. Soak: keel-raft-sim --seed 100000 --seeds 1000000.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: keel-raft-sim [--seed S] [--seeds N] [--members M]\n"
            "                     [--steps K] [--faults LIST] [--bug N]"
            " [--trace]\n"
            "  LIST: all, none, or drop,dup,delay,partition,oneway,crash,"
            "conf,\n"
            "        transfer,snapshot,disk,read\n"
            "  --bug N: 1 commit old term by counting, 2 count old votes,\n"
            "           3 vote for stale logs, 4 ack before persist,"
            " 5 endless lease,\n"
            "           6 learners count toward commit\n");
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, seeds = 1, k;
    int members = 0, steps = 300, bug = 0;
    unsigned faults = SIM_F_ALL;
    const char *faults_arg = "all";
    bool trace = false;
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--trace") == 0) {
            trace = true;
            continue;
        }
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--seeds") == 0) {
            seeds = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--members") == 0) {
            members = atoi(v);
        } else if (strcmp(a, "--steps") == 0) {
            steps = atoi(v);
        } else if (strcmp(a, "--bug") == 0) {
            bug = atoi(v);
        } else if (strcmp(a, "--faults") == 0) {
            faults_arg = v;
            if (sim_parse_faults(v, &faults) != 0) {
                fprintf(stderr, "keel-raft-sim: unknown fault in '%s'\n", v);
                usage();
                return 2;
            }
        } else {
            usage();
            return 2;
        }
        i++;
    }
    if (members < 0 || members > 7 || steps < 0) {
        fprintf(stderr,
                "keel-raft-sim: --members must be 1..7 (0: 1, 3, 5"
                " or 7 by seed), --steps >= 0\n");
        return 2;
    }
    {
        uint64_t elections = 0, commits = 0, crashes = 0, reads = 0, confs = 0;
        int worst_live = 0;
        for (k = 0; k < seeds; k++) {
            struct sim_opts o;
            struct sim_result r;
            memset(&o, 0, sizeof(o));
            o.seed = seed + k;
            o.members = members != 0 ? members : 1 + 2 * (int)(o.seed % 4);
            o.steps = steps;
            o.faults = faults;
            o.trace = trace;
            o.test_bug = bug;
            o.out = stdout;
            if (sim_run(&o, &r) != 0) {
                printf("VIOLATION seed %" PRIu64
                       " (%d members): %s\n"
                       "replay: keel-raft-sim --seed %" PRIu64
                       " --members %d --steps %d --faults %s --bug %d"
                       " --trace\n",
                       o.seed, o.members, r.what, o.seed, o.members, steps,
                       faults_arg, bug);
                return 1;
            }
            elections += r.elections;
            commits += r.commits;
            crashes += r.crashes;
            reads += r.reads;
            confs += r.conf_changes;
            if (r.liveness_ticks > worst_live) {
                worst_live = r.liveness_ticks;
            }
        }
        printf("ok: %" PRIu64 " seeds from %" PRIu64 ": %" PRIu64
               " elections, %" PRIu64 " commits, %" PRIu64 " crashes, %" PRIu64
               " reads checked, %" PRIu64
               " conf changes applied; slowest recovery %d ticks\n",
               seeds, seed, elections, commits, crashes, reads, confs,
               worst_live);
    }
    return 0;
}
