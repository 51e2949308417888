/*
 * Deterministic simulator for raft/: N members on a virtual clock and a
 * virtual network, driven by one seeded PRNG, with invariants checked after
 * every event. Used by tests/raft/test_sim.c (many seeds per `make test`)
 * and by the keel-raft-sim program (soak, replay).
 */
#ifndef KEEL_TESTS_RAFT_SIM_H
#define KEEL_TESTS_RAFT_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Fault mix (bit set). */
enum sim_fault {
    SIM_F_DROP = 1 << 0,      /* lose messages */
    SIM_F_DUP = 1 << 1,       /* deliver some twice */
    SIM_F_DELAY = 1 << 2,     /* long random delays: reordering */
    SIM_F_PARTITION = 1 << 3, /* symmetric partitions, healed later */
    SIM_F_ONEWAY = 1 << 4,    /* one-way link failures */
    SIM_F_CRASH = 1 << 5,     /* crash (lose unpersisted state), restart */
    SIM_F_CONF = 1 << 6,      /* learners, promotion, removal */
    SIM_F_TRANSFER = 1 << 7,  /* leadership transfers */
    SIM_F_SNAPSHOT = 1 << 8,  /* compaction, snapshots to followers */
    SIM_F_DISK = 1 << 9,      /* slow fsync (persist completes later) */
    SIM_F_READ = 1 << 10,     /* ReadIndex requests, checked */
    SIM_F_ALL = (1 << 11) - 1,
};

struct sim_opts
{
    uint64_t seed;
    int members; /* initial voters: 1..7 */
    int steps;   /* ticks of the fault phase */
    unsigned faults;
    bool trace;   /* print every event to `out` */
    int test_bug; /* enum raft_test_bug, for the mutation check */
    FILE *out;    /* trace and reports (stderr if NULL) */
};

struct sim_result
{
    bool violation;
    char what[512];     /* the first violation, readable */
    uint64_t commits;   /* highest commit index reached */
    uint64_t elections; /* leaders elected */
    uint64_t crashes;
    uint64_t snapshots_sent;
    uint64_t conf_changes; /* applied on some member */
    uint64_t reads;        /* read states checked */
    uint64_t events;
    int liveness_ticks; /* ticks from heal to a committed proposal */
};

/* Parses "drop,dup,delay,partition,oneway,crash,conf,transfer,snapshot,
 * disk,read", "all" or "none" into a mask; -1 on an unknown name. */
int sim_parse_faults(const char *s, unsigned *mask);

/* Runs one seed. Returns 0, or -1 on an invariant violation (res->what). */
int sim_run(const struct sim_opts *o, struct sim_result *res);

#endif /* KEEL_TESTS_RAFT_SIM_H */
