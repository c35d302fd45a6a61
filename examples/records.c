/*
 * records.c - partial results plus the failure, with its origin.
 *
 * Four records are fetched in parallel; record 3 does not exist. The
 * fetches are gathered with weft_gather_settled(), which cancels nothing:
 * the three records that exist are used, and the missing one is reported
 * with where it came from: the task's name and id and the line that
 * spawned it (WEFT_SPAWN_SITE), as weft_error_print() writes it.
 *
 * With weft_gather() instead, the first failure would cancel the fetches
 * still running; see factorials.c.
 */
#include <weft.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define NREC 4

/* The "database". */
static const char *const db[] = {NULL, "ada", "grace", NULL, "barbara"};

static atomic_int released;

struct record {
    int id;
    char name[16];
};

static void
release_hook(void *arg)
{
    (void)arg;
    atomic_fetch_add(&released, 1);
}

static weft_status_t
fetch(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct record *r = arg;
    if (weft_task_is_cancelled(self)) {
        return WEFT_ECANCELED;
    }
    if (r->id <= 0 || r->id >= (int)(sizeof(db) / sizeof(db[0])) ||
        db[r->id] == NULL) {
        return weft_task_fail(self, WEFT_EUSER, "no record with id %d", r->id);
    }
    snprintf(r->name, sizeof(r->name), "%s", db[r->id]);
    out->ptr = r;
    return WEFT_OK;
}

int
main(void)
{
    static const char *const task_names[NREC] = {"fetch#1", "fetch#2",
                                                 "fetch#3", "fetch#4"};
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    weft_executor_t *ex;
    if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
        return 1;
    }
    struct record recs[NREC];
    weft_future_t *f[NREC], *all;
    int spawned = 0, bad = 0;

    for (int i = 0; i < NREC; i++) {
        recs[i] = (struct record){.id = i + 1};
        weft_spawn_opts_t o = {
            .name = task_names[i], .release = release_hook, WEFT_SPAWN_SITE};
        if (weft_spawn_ex(ex, &o, fetch, &recs[i], &f[i]) != WEFT_OK) {
            return 1;
        }
        spawned++;
    }
    /* adopt: the gather takes over our references to the fetches. */
    weft_combine_opts_t co = {.name = "fetch records", .adopt = true};
    if (weft_gather_settled(ex, f, NREC, &co, &all) != WEFT_OK) {
        return 1;
    }
    weft_status_t st = weft_future_wait(all);
    printf("gather_settled: %s\n", weft_status_name(st));

    int ok = 0, failed = 0, cancelled = 0;
    printf("records:\n");
    for (size_t i = 0; i < weft_combine_size(all); i++) {
        weft_child_result_t c;
        if (weft_combine_child(all, i, &c) != WEFT_OK) {
            bad = 1;
            continue;
        }
        if (c.outcome == WEFT_OUTCOME_SUCCEEDED) {
            const struct record *r = c.value.ptr;
            printf("  %d: %s\n", r->id, r->name);
            ok++;
        } else {
            printf("  %zu: %s\n", i + 1, weft_outcome_name(c.outcome));
            failed += c.outcome == WEFT_OUTCOME_FAILED;
            cancelled += c.outcome == WEFT_OUTCOME_CANCELLED;
        }
    }

    weft_errgroup_t *errs;
    if (weft_combine_errors(all, &errs) == WEFT_OK) {
        printf("failures (%zu):\n", weft_errgroup_leaf_count(errs));
        for (size_t i = 0; i < weft_errgroup_count(errs); i++) {
            weft_errgroup_entry_t e;
            if (weft_errgroup_entry(errs, i, &e) != WEFT_OK ||
                e.kind != WEFT_ERRGROUP_ERROR) {
                continue;
            }
            printf("  ");
            weft_error_print(e.error, stdout);
            printf("    code    %s\n"
                   "    message %s\n"
                   "    task    %s (id %llu)\n"
                   "    spawned %s:%d in %s()\n",
                   weft_status_name(weft_error_status(e.error)),
                   weft_error_message(e.error),
                   weft_error_task_name(e.error) ? weft_error_task_name(e.error)
                                                 : "?",
                   (unsigned long long)weft_error_task_id(e.error),
                   weft_error_file(e.error) ? weft_error_file(e.error) : "?",
                   weft_error_line(e.error),
                   weft_error_func(e.error) ? weft_error_func(e.error) : "?");
            bad |= weft_error_task_name(e.error) == NULL ||
                   strcmp(weft_error_task_name(e.error), "fetch#3") != 0 ||
                   weft_error_line(e.error) <= 0;
        }
        bad |= weft_errgroup_leaf_count(errs) != 1;
        weft_errgroup_release(errs);
    } else {
        bad = 1;
    }
    weft_future_release(all);

    weft_status_t dst = weft_executor_destroy(ex);
    int rel = atomic_load(&released);
    printf("accounting: %d spawned, %d ended (%d succeeded, %d failed, %d "
           "cancelled), %d released, %d leaked, destroy %s\n",
           spawned, ok + failed + cancelled, ok, failed, cancelled, rel,
           spawned - rel, weft_status_name(dst));
    bad |= st != WEFT_OK || ok != 3 || failed != 1 || cancelled != 0 ||
           rel != NREC || dst != WEFT_OK;
    if (bad) {
        printf("FAILED: expected three records and one failure with its "
               "origin\n");
    }
    return bad ? 1 : 0;
}
