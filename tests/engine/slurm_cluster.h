/*
 * tests/engine/slurm_cluster.h — a real one-node Slurm cluster for a test:
 * munged, slurmctld and slurmd (Debian's slurm-wlm, from `make deps`)
 * started in the foreground from the test process with a generated
 * slurm.conf for this machine (NodeName = the hostname, CPUs = the online
 * cores, RealMemory from /proc/meminfo, proctrack/linuxproc, task/none,
 * select/cons_tres, no accounting), on free ports, everything under the
 * test's tmpdir. SLURM_CONF points at it for the test and every process it
 * starts. The daemons die with the test process (PR_SET_PDEATHSIG), and
 * mf_test_slurm_stop cancels what is left in the queue and stops them.
 */
#ifndef MF_TEST_SLURM_CLUSTER_H
#define MF_TEST_SLURM_CLUSTER_H

#include <limits.h>
#include <sys/types.h>

typedef struct mf_test_slurm {
    char dir[PATH_MAX];
    pid_t munged, ctld, slurmd;
    int up;
} mf_test_slurm;

/* 1 when the cluster is up (its node idle). Otherwise 0 after printing
 * "skipped: <why>" — or, with MEDFLOW_REQUIRE_SLURM=1 (CI), after recording
 * a test failure: there, a cluster that cannot start is a failure. */
int mf_test_slurm_start(mf_test_slurm *c);
void mf_test_slurm_stop(mf_test_slurm *c);

#endif
