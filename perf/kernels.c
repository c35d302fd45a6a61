/*
 * kernels.c - the heavy leaf kernels of the benchmark workloads, compiled
 * once by the C compiler and linked into every runtime's binary (the
 * bench_kernels library), so that plain C, weft, libgomp, libomp and
 * oneTBB run the same machine code between their spawns and joins.
 * workloads.h declares them and says why they are not inline.
 */
#include "workloads.h"

uint64_t
bench_uts_digest(uint64_t state)
{
    return bench_mix(bench_spin(state, BENCH_UTS_WORK));
}

uint64_t
bench_fanout_work(long i)
{
    return bench_spin(bench_mix((uint64_t)i ^ BENCH_FANOUT_SEED),
                      BENCH_FANOUT_WORK);
}

uint64_t
bench_failfast_step(uint64_t x)
{
    return bench_spin(x, BENCH_FAILFAST_SPIN);
}

/* reduce: values k/16 with k < 2^16, so every partial sum is exact and
 * the result does not depend on the order the tasks finish in. */
double
bench_reduce_leaf(const double *x, long lo, long hi)
{
    double s = 0.0;

    for (long i = lo; i < hi; i++) {
        s += x[i];
    }
    return s;
}

/*
 * C[block] += A[rows, :] * B[:, cols]. The k dimension is walked in
 * panels of BENCH_MATMUL_KPANEL: each panel of the block's column strip of
 * B is packed into a per-thread contiguous buffer (16 KiB, L1-resident),
 * then i-k-j order runs over it (the j loop vectorizes). Without the
 * packing, the strip's rows are n * 8 bytes apart and collide in the same
 * cache sets, and the time depended on which physical pages a process got
 * (a 2x bimodal spread between processes, different per compiler). The
 * buffer is allocated on a thread's first block (during the warm-up run)
 * and kept for the life of the process.
 */
static __thread double *bench_matmul_pack;
/* Every thread's buffer, so that bench_matmul_free_packs() can free them
 * (keeps LeakSanitizer quiet in sanitizer builds). */
static pthread_mutex_t bench_matmul_lock = PTHREAD_MUTEX_INITIALIZER;
static double *bench_matmul_packs[4096];
static int bench_matmul_npacks;

void
bench_matmul_block(const double *a, const double *b, double *c, long n,
                   long block)
{
    long nb = n / BENCH_MATMUL_BLOCK;
    long i0 = (block / nb) * BENCH_MATMUL_BLOCK;
    long j0 = (block % nb) * BENCH_MATMUL_BLOCK;
    double *bp = bench_matmul_pack;

    if (bp == NULL) {
        bp = (double *)malloc(BENCH_MATMUL_KPANEL * BENCH_MATMUL_BLOCK *
                              sizeof(double));
        if (bp == NULL) {
            bench_die("out of memory for a packed panel of B");
        }
        bench_matmul_pack = bp;
        pthread_mutex_lock(&bench_matmul_lock);
        if (bench_matmul_npacks < 4096) {
            bench_matmul_packs[bench_matmul_npacks++] = bp;
        }
        pthread_mutex_unlock(&bench_matmul_lock);
    }
    for (long k0 = 0; k0 < n; k0 += BENCH_MATMUL_KPANEL) {
        for (long k = 0; k < BENCH_MATMUL_KPANEL; k++) {
            memcpy(bp + k * BENCH_MATMUL_BLOCK, b + (k0 + k) * n + j0,
                   BENCH_MATMUL_BLOCK * sizeof(double));
        }
        for (long i = i0; i < i0 + BENCH_MATMUL_BLOCK; i++) {
            double *ci = c + i * n + j0;
            const double *ai = a + i * n + k0;
            for (long j = 0; j < BENCH_MATMUL_BLOCK; j += 8) {
                double acc[8];
                for (int t = 0; t < 8; t++) {
                    acc[t] = ci[j + t];
                }
                for (long k = 0; k < BENCH_MATMUL_KPANEL; k++) {
                    double aik = ai[k];
                    const double *bk = bp + k * BENCH_MATMUL_BLOCK + j;
                    for (int t = 0; t < 8; t++) {
                        acc[t] += aik * bk[t];
                    }
                }
                for (int t = 0; t < 8; t++) {
                    ci[j + t] = acc[t];
                }
            }
        }
    }
}

void
bench_matmul_free_packs(void)
{
    pthread_mutex_lock(&bench_matmul_lock);
    for (int i = 0; i < bench_matmul_npacks; i++) {
        free(bench_matmul_packs[i]);
    }
    bench_matmul_npacks = 0;
    pthread_mutex_unlock(&bench_matmul_lock);
}
