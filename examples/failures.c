/*
 * failures.c - what weft reports when things go wrong.
 *
 * Tasks run under one token: A succeeds (and is awaited first), then B
 * fails with a message while C loops until it is cancelled. When B's
 * failure is seen, the token is cancelled with it as the reason, so C
 * stops (or never starts, if the cancel came first); a fourth task D,
 * spawned under the already cancelled token, never runs. Each future is then asked for its outcome
 * and its error (failure or cancellation reason), and the program ends
 * with an exactly-once accounting line: every task ended once, every
 * release hook ran once, no body ran that should not have.
 */
#include <weft.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

static atomic_int bodies;
static atomic_int hooks;
static atomic_int c_started;

static void
release_hook(void *arg)
{
    (void)arg;
    atomic_fetch_add(&hooks, 1);
}

static weft_status_t
task_a(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    atomic_fetch_add(&bodies, 1);
    out->i64 = 120;
    return WEFT_OK;
}

static weft_status_t
task_b(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    atomic_fetch_add(&bodies, 1);
    return weft_task_fail(self, WEFT_EUSER, "step %d of 10 failed", 4);
}

static weft_status_t
task_c(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    atomic_fetch_add(&bodies, 1);
    atomic_store(&c_started, 1);
    while (!weft_task_is_cancelled(self)) {
        /* one step of work per poll */
    }
    return WEFT_ECANCELED;
}

static void
report(const char *label, weft_future_t *f)
{
    char buf[256] = "";
    weft_error_t *e = weft_future_error(f);
    if (e != NULL) {
        weft_error_format(e, buf, sizeof(buf));
    }
    printf("  %s: %-9s %s\n", label,
           weft_outcome_name(weft_future_outcome(f)), buf);
}

int
main(void)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    weft_executor_t *ex;
    weft_token_t *tok;
    if (weft_executor_create(&cfg, &ex) != WEFT_OK ||
        weft_token_create(NULL, &tok) != WEFT_OK) {
        return 1;
    }

    weft_spawn_opts_t oa = {.name = "A", .token = tok,
                            .release = release_hook, WEFT_SPAWN_SITE};
    weft_spawn_opts_t ob = {.name = "B", .token = tok,
                            .release = release_hook, WEFT_SPAWN_SITE};
    weft_spawn_opts_t oc = {.name = "C", .token = tok,
                            .release = release_hook, WEFT_SPAWN_SITE};
    weft_future_t *fa, *fb, *fc, *fd;
    weft_spawn_ex(ex, &oa, task_a, NULL, &fa);
    weft_future_wait(fa);
    weft_spawn_ex(ex, &ob, task_b, NULL, &fb);
    weft_spawn_ex(ex, &oc, task_c, NULL, &fc);

    /* The first failure cancels the rest, with that failure as reason. */
    if (weft_future_wait(fb) != WEFT_OK) {
        weft_token_cancel(tok, weft_future_error(fb));
    }
    weft_spawn_opts_t od = {.name = "D", .token = tok,
                            .release = release_hook, WEFT_SPAWN_SITE};
    weft_spawn_ex(ex, &od, task_a, NULL, &fd);

    weft_future_wait(fc);
    weft_future_wait(fd);
    printf("outcomes:\n");
    report("A", fa);
    report("B", fb);
    report("C", fc);
    report("D", fd);

    int ended = 0;
    weft_future_t *all[] = {fa, fb, fc, fd};
    for (int i = 0; i < 4; i++) {
        ended += weft_future_is_done(all[i]);
        weft_future_release(all[i]);
    }
    weft_token_release(tok);
    weft_status_t st = weft_executor_destroy(ex);
    int expect_bodies = 2 + atomic_load(&c_started);
    printf("accounting: 4 spawned, %d ended, %d bodies ran (A, B%s; D "
           "never), %d release hooks, destroy %s\n",
           ended, atomic_load(&bodies),
           atomic_load(&c_started) ? ", C" : "; C cancelled before start",
           atomic_load(&hooks), weft_status_name(st));
    return ended == 4 && atomic_load(&bodies) == expect_bodies &&
                   atomic_load(&hooks) == 4 && st == WEFT_OK
               ? 0
               : 1;
}
