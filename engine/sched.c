/* engine/sched.c — resources, GPU discovery and packing (see sched.h). */
#include "engine/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef MF_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

int mf_sched_parse_gpus(const char *list, int *ids, int *n, mf_err *err)
{
    *n = 0;
    const char *p = list;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 4095 || (*end && *end != ','))
            return mf_err_set(err, MF_EINVAL, "--gpus: expected a comma-separated list of device numbers like 0,1,2, found '%s'", list);
        for (int k = 0; k < *n; k++)
            if (ids[k] == v) return mf_err_set(err, MF_EINVAL, "--gpus: device %ld listed twice in '%s'", v, list);
        if (*n >= MF_SCHED_MAX_GPUS) return mf_err_set(err, MF_EINVAL, "--gpus: more than %d devices", MF_SCHED_MAX_GPUS);
        ids[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

int mf_sched_discover_gpus(int *ids, int *n)
{
    *n = 0;
#ifdef MF_HAVE_CUDA
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    int vid[MF_SCHED_MAX_GPUS], nv = 0;
    mf_err e;
    if (vis && *vis && !mf_sched_parse_gpus(vis, vid, &nv, &e) && nv == count) {
        for (int k = 0; k < nv; k++) ids[k] = vid[k];
        *n = nv;
        return 0;
    }
    for (int k = 0; k < count && k < MF_SCHED_MAX_GPUS; k++) ids[(*n)++] = k;
#else
    (void)ids;
#endif
    return 0;
}

int mf_sched_init(mf_sched *s, const char *gpus_list, int jobs, mf_err *err)
{
    memset(s, 0, sizeof *s);
    int rc = gpus_list ? mf_sched_parse_gpus(gpus_list, s->gpu_ids, &s->n_gpus, err)
                       : mf_sched_discover_gpus(s->gpu_ids, &s->n_gpus);
    if (rc) return rc;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    s->cpus_total = s->cpus_free = c > 0 ? (int)c : 1;
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    s->mem_total_mb = s->mem_free_mb = pages > 0 && psz > 0 ? (long long)pages * psz / (1024 * 1024) : 1LL << 20;
    s->jobs_max = jobs;
    return 0;
}

int mf_sched_request(const mf_sched *s, const mf_stage *st, mf_sched_req *req, mf_err *err)
{
    const mf_resources *d = &st->kind->resources;
    int gpus = st->res.gpus > 0 ? st->res.gpus : d->gpus;
    int cpus = st->res.cpus > 0 ? st->res.cpus : d->cpus;
    long long mem = st->res.mem_mb > 0 ? st->res.mem_mb : d->mem_mb;
    if (st->res.nodes > 1)
        return mf_err_at(err, MF_EINVAL, NULL, st->line, st->col,
                         "stage '%s' asks for %d nodes; this machine is one: run the graph with --executor slurm "
                         "(docs/cluster.md)",
                         st->name, st->res.nodes);
    if (gpus > 0 && s->n_gpus == 0) gpus = 0; /* CPU backend, one rank */
    if (gpus > s->n_gpus)
        return mf_err_at(err, MF_EINVAL, NULL, st->line, st->col,
                         "stage '%s' needs %d GPUs but this machine has %d (see --gpus)", st->name, gpus, s->n_gpus);
    req->gpus = gpus;
    int cpu_ranks = st->res.gpus == 0 && st->res.ranks > 1 ? st->res.ranks : 1;
    req->ranks = gpus > 0 ? gpus : cpu_ranks;
    req->comm = req->ranks < 2 ? "" : gpus > 0 ? "nccl" : "mpi";
    if (cpus < 1) cpus = 1;
    req->cpus = cpus > s->cpus_total ? s->cpus_total : cpus;
    if (mem < 0) mem = 0;
    req->mem_mb = mem > s->mem_total_mb ? s->mem_total_mb : mem;
    return 0;
}

int mf_sched_try_acquire(mf_sched *s, const mf_sched_req *req, int *devs)
{
    if (s->jobs_max > 0 && s->jobs_running >= s->jobs_max) return 0;
    /* an idle machine always takes the next stage, so nothing waits forever */
    if (s->jobs_running > 0 && (req->cpus > s->cpus_free || req->mem_mb > s->mem_free_mb)) return 0;
    int free_gpus = 0;
    for (int k = 0; k < s->n_gpus; k++) free_gpus += !s->gpu_busy[k];
    if (req->gpus > free_gpus) return 0;
    for (int k = 0, got = 0; k < s->n_gpus && got < req->gpus; k++)
        if (!s->gpu_busy[k]) { s->gpu_busy[k] = 1; devs[got++] = s->gpu_ids[k]; }
    s->cpus_free -= req->cpus;
    s->mem_free_mb -= req->mem_mb;
    s->jobs_running++;
    return 1;
}

void mf_sched_release(mf_sched *s, const mf_sched_req *req, const int *devs)
{
    for (int g = 0; g < req->gpus; g++)
        for (int k = 0; k < s->n_gpus; k++)
            if (s->gpu_ids[k] == devs[g]) s->gpu_busy[k] = 0;
    s->cpus_free += req->cpus;
    s->mem_free_mb += req->mem_mb;
    s->jobs_running--;
}

const char *mf_sched_devices_str(const int *devs, int n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int k = 0; k < n && used < len; k++)
        used += (size_t)snprintf(buf + used, len - used, k ? ",%d" : "%d", devs[k]);
    return buf;
}
