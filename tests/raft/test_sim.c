/*
 * The simulator as a test: many seeds of a short schedule with every fault
 * on (10,000 seeds; 1,000 under the sanitizers, KEEL_SANITIZED=1), a
 * fault-free run, determinism, and the mutation check: each deliberately
 * broken rule (raft_config.test_bug) must be caught within the seeds run
 * (the search stops at the first violation, so it is cheap even under the
 * sanitizers): votes counted from older terms, votes granted to
 * out-of-date logs, a leader counting its own unpersisted entries, a
 * lease trusted until check-quorum, and learners counted toward commit.
 * RAFT_BUG_COMMIT_OLD_TERM needs three elections with exact losses between them
 * (the paper's Figure 8) and random schedules rarely produce it: test_raft.c
 * replays that schedule deterministically and checks both the rule and the
 * switch.
 *
 * Environment: KEEL_RAFT_SIM_SEEDS=N overrides the seed count (soak),
 * KEEL_SEED=S starts from seed S (replay a range).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft.h"
#include "sim.h"

#define STEPS 300

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? strtoull(v, NULL, 10) : dflt;
}

static bool sanitized(void)
{
    const char *v = getenv("KEEL_SANITIZED");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static int members_for(uint64_t seed)
{
    return 1 + 2 * (int)(seed % 4); /* 1, 3, 5, 7 */
}

static void opts_init(struct sim_opts *o,
                      uint64_t seed,
                      unsigned faults,
                      int bug)
{
    memset(o, 0, sizeof(*o));
    o->seed = seed;
    o->members = members_for(seed);
    o->steps = STEPS;
    o->faults = faults;
    o->test_bug = bug;
}

static void report(const struct sim_opts *o, const struct sim_result *r)
{
    fprintf(stderr,
            "raft simulator: VIOLATION at seed %" PRIu64
            " (%d members): %s\n"
            "replay: build/bin/keel-raft-sim --seed %" PRIu64
            " --members %d --steps %d --faults all --trace\n",
            o->seed, o->members, r->what, o->seed, o->members, o->steps);
}

static void test_sim_seeds(void **state)
{
    uint64_t n = env_u64("KEEL_RAFT_SIM_SEEDS", sanitized() ? 1000 : 10000);
    uint64_t first = env_u64("KEEL_SEED", 1), s;
    uint64_t elections = 0, crashes = 0, snaps = 0, reads = 0, confs = 0;
    int worst = 0;
    (void)state;
    for (s = first; s < first + n; s++) {
        struct sim_opts o;
        struct sim_result r;
        opts_init(&o, s, SIM_F_ALL, RAFT_BUG_NONE);
        if (sim_run(&o, &r) != 0) {
            report(&o, &r);
            fail_msg("seed %" PRIu64 ": %s", s, r.what);
        }
        elections += r.elections;
        crashes += r.crashes;
        snaps += r.snapshots_sent;
        reads += r.reads;
        confs += r.conf_changes;
        if (r.liveness_ticks > worst) {
            worst = r.liveness_ticks;
        }
    }
    fprintf(stderr,
            "raft simulator: %" PRIu64 " seeds ok: %" PRIu64
            " elections, %" PRIu64 " crashes, %" PRIu64
            " snapshots sent, %" PRIu64 " reads checked, %" PRIu64
            " conf changes applied, slowest recovery %d ticks\n",
            n, elections, crashes, snaps, reads, confs, worst);
    /* the schedule really exercises what it claims to */
    assert_true(elections > n);
    assert_true(crashes > n / 2);
    assert_true(snaps > n / 10);
    assert_true(reads > n);
    assert_true(confs > n);
}

static void test_sim_no_faults_is_quick(void **state)
{
    uint64_t s;
    (void)state;
    for (s = 1; s <= 200; s++) {
        struct sim_opts o;
        struct sim_result r;
        opts_init(&o, s, 0, RAFT_BUG_NONE);
        o.steps = 100;
        assert_int_equal(sim_run(&o, &r), 0);
        assert_int_equal(r.crashes, 0);
        assert_true(r.elections >= 1);
        assert_true(r.commits > (uint64_t)o.members);
        assert_true(r.liveness_ticks <= 2);
    }
}

static void test_sim_is_deterministic(void **state)
{
    struct sim_opts o;
    struct sim_result a, b;
    (void)state;
    opts_init(&o, 4242, SIM_F_ALL, RAFT_BUG_NONE);
    assert_int_equal(sim_run(&o, &a), 0);
    assert_int_equal(sim_run(&o, &b), 0);
    assert_int_equal(a.events, b.events);
    assert_int_equal(a.commits, b.commits);
    assert_int_equal(a.elections, b.elections);
    assert_int_equal(a.crashes, b.crashes);
    assert_int_equal(a.reads, b.reads);
}

static void test_sim_parse_faults(void **state)
{
    unsigned m;
    (void)state;
    assert_int_equal(sim_parse_faults("all", &m), 0);
    assert_int_equal(m, SIM_F_ALL);
    assert_int_equal(sim_parse_faults("drop,crash", &m), 0);
    assert_int_equal(m, SIM_F_DROP | SIM_F_CRASH);
    assert_int_equal(sim_parse_faults("none", &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(sim_parse_faults("drop,meteor", &m), -1);
}

/* Runs seeds with a broken rule until the simulator reports a violation. */
static void expect_caught(int bug, uint64_t max_seeds)
{
    uint64_t s;
    for (s = 1; s <= max_seeds; s++) {
        struct sim_opts o;
        struct sim_result r;
        opts_init(&o, s, SIM_F_ALL, bug);
        if (sim_run(&o, &r) != 0) {
            fprintf(stderr,
                    "mutation %d caught at seed %" PRIu64 " (%d members): %s\n",
                    bug, s, o.members, r.what);
            return;
        }
    }
    fail_msg("mutation %d survived %" PRIu64 " seeds", bug, max_seeds);
}

static void test_sim_catches_votes_from_old_terms(void **state)
{
    (void)state;
    expect_caught(RAFT_BUG_VOTE_OLD_TERM, 10000);
}

static void test_sim_catches_votes_for_stale_logs(void **state)
{
    (void)state;
    expect_caught(RAFT_BUG_NO_LOG_CHECK, 10000);
}

static void test_sim_catches_ack_before_persist(void **state)
{
    (void)state;
    expect_caught(RAFT_BUG_ACK_BEFORE_PERSIST, 10000);
}

static void test_sim_catches_endless_lease(void **state)
{
    (void)state;
    expect_caught(RAFT_BUG_ENDLESS_LEASE, 10000);
}

static void test_sim_catches_learners_counted(void **state)
{
    (void)state;
    expect_caught(RAFT_BUG_LEARNERS_COUNT, 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_parse_faults),
        cmocka_unit_test(test_sim_is_deterministic),
        cmocka_unit_test(test_sim_no_faults_is_quick),
        cmocka_unit_test(test_sim_catches_votes_from_old_terms),
        cmocka_unit_test(test_sim_catches_votes_for_stale_logs),
        cmocka_unit_test(test_sim_catches_ack_before_persist),
        cmocka_unit_test(test_sim_catches_endless_lease),
        cmocka_unit_test(test_sim_catches_learners_counted),
        cmocka_unit_test(test_sim_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
