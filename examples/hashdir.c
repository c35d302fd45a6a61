/*
 * hashdir.c - hash every file under a directory in parallel (FNV-1a).
 *
 * Usage: example_hashdir DIR
 *
 * One task per directory lists it and spawns one task per entry: a file
 * task reads and hashes its file, a directory task does the same one
 * level down, and each directory task joins its children. Symbolic links
 * are not followed. Each task's argument is the path it owns, handed over
 * with weft_spawn_ex() and a release hook, so every path is freed exactly
 * once whether or not its task runs.
 *
 * Output: one line "HASH  PATH" per regular file, sorted by path, then a
 * digest of all of them, then a check that re-hashes every file on the
 * main thread, and an accounting line: every spawned task ended once and
 * every release hook ran once.
 */
#define _GNU_SOURCE /* d_type, lstat, O_CLOEXEC */

#include <weft.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* One hashed file. */
struct result {
    char *path;
    uint64_t hash;
    uint64_t bytes;
};

/* Results of every file task; results_lock protects the three fields. */
static pthread_mutex_t results_lock = PTHREAD_MUTEX_INITIALIZER;
static struct result *results;
static size_t nresults;
static size_t capresults;

static atomic_long spawned;
static atomic_long ended; /* joins that returned, whatever the outcome */
static atomic_long released;
static atomic_long failed;

static void
release_path(void *arg)
{
    free(arg);
    atomic_fetch_add(&released, 1);
}

/* FNV-1a over a file's bytes. Returns 0 and *out, or an errno value. */
static int
hash_file(const char *path, uint64_t *out, uint64_t *bytes)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    uint64_t h = FNV_OFFSET;
    uint64_t total = 0;
    unsigned char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            close(fd);
            return e;
        }
        if (n == 0) {
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            h ^= buf[i];
            h *= FNV_PRIME;
        }
        total += (uint64_t)n;
    }
    close(fd);
    *out = h;
    *bytes = total;
    return 0;
}

static weft_status_t
file_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)out;
    const char *path = arg;
    struct result r = {NULL, 0, 0};
    int e = hash_file(path, &r.hash, &r.bytes);
    if (e != 0) {
        return weft_task_fail(self, WEFT_EUSER, "%s: %s", path, strerror(e));
    }
    r.path = strdup(path);
    if (r.path == NULL) {
        return WEFT_ENOMEM;
    }
    pthread_mutex_lock(&results_lock);
    if (nresults == capresults) {
        size_t cap = capresults ? capresults * 2 : 64;
        struct result *grown = realloc(results, cap * sizeof(*results));
        if (grown == NULL) {
            pthread_mutex_unlock(&results_lock);
            free(r.path);
            return WEFT_ENOMEM;
        }
        results = grown;
        capresults = cap;
    }
    results[nresults++] = r;
    pthread_mutex_unlock(&results_lock);
    return WEFT_OK;
}

static weft_status_t dir_task(weft_task_t *self, void *arg, weft_value_t *out);

/* Spawn fn on a copy of path; the copy belongs to the task. */
static weft_status_t
spawn_on_path(weft_task_t *self, weft_fn_t fn, const char *path,
              weft_future_t **out)
{
    char *copy = strdup(path);
    if (copy == NULL) {
        return WEFT_ENOMEM;
    }
    weft_spawn_opts_t o = {.release = release_path,
                           .name = fn == dir_task ? "dir" : "file",
                           WEFT_SPAWN_SITE};
    weft_status_t st =
        weft_spawn_ex(weft_task_executor(self), &o, fn, copy, out);
    if (st == WEFT_OK) {
        atomic_fetch_add(&spawned, 1);
    } else {
        atomic_fetch_add(&spawned, 1); /* refused: its hook still ran */
        atomic_fetch_add(&ended, 1);
    }
    return st;
}

static weft_status_t
dir_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)out;
    const char *dir = arg;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return weft_task_fail(self, WEFT_EUSER, "%s: %s", dir, strerror(errno));
    }
    weft_future_t **kids = NULL;
    size_t nkids = 0, cap = 0;
    weft_status_t st = WEFT_OK;
    struct dirent *de;
    while (st == WEFT_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        char path[4096];
        int len = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (len < 0 || (size_t)len >= sizeof(path)) {
            st =
                weft_task_fail(self, WEFT_EUSER, "path too long under %s", dir);
            break;
        }
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat sb;
            if (lstat(path, &sb) != 0) {
                continue;
            }
            type = S_ISDIR(sb.st_mode)   ? DT_DIR
                   : S_ISREG(sb.st_mode) ? DT_REG
                                         : DT_UNKNOWN;
        }
        if (type != DT_DIR && type != DT_REG) {
            continue; /* links, devices, sockets: not followed */
        }
        if (nkids == cap) {
            cap = cap ? cap * 2 : 16;
            weft_future_t **grown = realloc(kids, cap * sizeof(*kids));
            if (grown == NULL) {
                st = WEFT_ENOMEM;
                break;
            }
            kids = grown;
        }
        st = spawn_on_path(self, type == DT_DIR ? dir_task : file_task, path,
                           &kids[nkids]);
        if (st == WEFT_OK) {
            nkids++;
        }
    }
    closedir(d);
    /* Join every child, even after a failure: each must end once. */
    for (size_t i = 0; i < nkids; i++) {
        weft_status_t cs = weft_join(kids[i], NULL);
        atomic_fetch_add(&ended, 1);
        if (cs != WEFT_OK) {
            atomic_fetch_add(&failed, 1);
            if (st == WEFT_OK) {
                st = cs;
            }
        }
    }
    free(kids);
    return st;
}

static int
cmp_result(const void *x, const void *y)
{
    return strcmp(((const struct result *)x)->path,
                  ((const struct result *)y)->path);
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    weft_executor_t *ex;
    weft_status_t st = weft_executor_create(NULL, &ex);
    if (st != WEFT_OK) {
        fprintf(stderr, "executor: %s\n", weft_status_str(st));
        return 1;
    }
    weft_future_t *root;
    char *top = strdup(argv[1]);
    weft_spawn_opts_t o = {
        .release = release_path, .name = "dir", WEFT_SPAWN_SITE};
    st =
        top == NULL ? WEFT_ENOMEM : weft_spawn_ex(ex, &o, dir_task, top, &root);
    if (st == WEFT_OK) {
        atomic_fetch_add(&spawned, 1);
        weft_status_t rs = weft_future_wait(root);
        if (rs != WEFT_OK) {
            weft_error_print(weft_future_error(root), stderr);
        }
        weft_future_release(root);
        atomic_fetch_add(&ended, 1);
        st = rs;
    }
    weft_status_t sd = weft_executor_destroy(ex);

    qsort(results, nresults, sizeof(*results), cmp_result);
    uint64_t digest = FNV_OFFSET;
    uint64_t bytes = 0;
    size_t verified = 0;
    for (size_t i = 0; i < nresults; i++) {
        printf("%016llx  %s\n", (unsigned long long)results[i].hash,
               results[i].path);
        for (size_t k = 0; k < 8; k++) {
            digest ^= (results[i].hash >> (8 * k)) & 0xff;
            digest *= FNV_PRIME;
        }
        bytes += results[i].bytes;
        uint64_t again, n;
        if (hash_file(results[i].path, &again, &n) == 0 &&
            again == results[i].hash) {
            verified++;
        }
    }
    long sp = atomic_load(&spawned);
    long en = atomic_load(&ended);
    long re = atomic_load(&released);
    printf("%zu files, %llu bytes, digest %016llx; re-hashed on one thread: "
           "%zu of %zu match\n",
           nresults, (unsigned long long)bytes, (unsigned long long)digest,
           verified, nresults);
    printf("accounting: %ld spawned, %ld ended, %ld release hooks, %ld "
           "failed, destroy %s\n",
           sp, en, re, atomic_load(&failed), weft_status_name(sd));
    int ok = st == WEFT_OK && sd == WEFT_OK && sp == en && sp == re &&
             verified == nresults && nresults > 0;
    for (size_t i = 0; i < nresults; i++) {
        free(results[i].path);
    }
    free(results);
    if (!ok) {
        printf("FAILED\n");
        return 1;
    }
    return 0;
}
