/*
 * model_driver.hpp - command line of the Relacy model programs
 * (deque_model, parker_model and their mutants).
 *
 * Usage: PROGRAM SCENARIO [--expect KIND[,KIND...]] [--search SEARCH]
 *        PROGRAM --list
 *
 *   SCENARIO  one of the program's scenarios (--list prints them)
 *   KIND      the results that count as a pass:
 *               ok        no violation in the whole search (the default)
 *               assert    a harness assertion failed (item taken twice, lost,
 *                         contents not visible, ...)
 *               race      Relacy found a data race on an rl::var
 *               uninit    a load that can see no store
 *               deadlock  a thread blocked forever (a lost wake-up)
 *               leak      memory or a shadow leaked
 *             A mutant's test names the kinds that mean "the bug was
 *             found", so a mutant that passes the search (or crashes, or
 *             fails some other way) fails its test.
 *   SEARCH    full (the default: every interleaving, and every value a
 *             load may return within Relacy's one-store-back bound) or
 *             bound:N (the same, with at most N preemptions per run)
 *
 * Output: Relacy's report (on a violation, the full execution history of
 * the failing run), then one line
 *
 *   model: PROGRAM SCENARIO: RESULT after N iterations, T ms (expected
 *   KINDS): PASS|FAIL
 *
 * Exit status: 0 PASS, 1 FAIL, 2 usage.
 */
#ifndef WEFT_MODEL_DRIVER_HPP
#define WEFT_MODEL_DRIVER_HPP

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <typeinfo>
#include <vector>

namespace weft_model {

struct scenario {
    const char *name;
    const char *what;
    void (*run)(rl::test_params &);
};

/*
 * rl::simulate() for one scheduler type: rl::simulate instantiates
 * Relacy's engine for all three schedulers, which triples the compile
 * time; the model uses the full-search and context-bound ones. Same steps:
 * search; on a violation, replay the failing iteration from the saved
 * scheduler state with history collection on, which prints the execution
 * history.
 */
template <class Test, class Sched> void simulate_with(rl::test_params &p)
{
    const char *name = typeid(Test).name();
    *p.output_stream << name << std::endl;
    rl::ostringstream state;
    rl::test_result_e res = rl::run_test<Test, Sched>(p, state, false);
    if (res != rl::test_result_success) {
        rl::ostringstream replay;
        p.initial_state = state.str();
        p.collect_history = true;
        p.final_state = state.str();
        rl::iteration_t stop = p.stop_iteration;
        rl::test_result_e res2 = rl::run_test<Test, Sched>(p, replay, true);
        if (res2 != res || p.stop_iteration != stop) {
            *p.output_stream << "weft model: the replay of the failing "
                                "iteration differs (non-deterministic "
                                "harness?)"
                             << std::endl;
        }
        p.test_result = res;
        p.stop_iteration = stop;
    }
}

template <class Test> void run_test(rl::test_params &p)
{
    const rl::thread_id_t n = Test::params::thread_count;
    if (p.search_type == rl::sched_full) {
        simulate_with<Test, rl::full_search_scheduler<n>>(p);
    } else {
        simulate_with<Test, rl::context_bound_scheduler<n>>(p);
    }
}

struct kind_name {
    const char *key;
    rl::test_result_e result;
};

static const kind_name kinds[] = {
    {"ok", rl::test_result_success},
    {"assert", rl::test_result_user_assert_failed},
    {"race", rl::test_result_data_race},
    {"uninit", rl::test_result_unitialized_access},
    {"deadlock", rl::test_result_deadlock},
    {"leak", rl::test_result_memory_leak},
    {"leak", rl::test_result_resource_leak},
    {"livelock", rl::test_result_livelock},
};

inline int usage(const char *prog, const scenario *sc, size_t n)
{
    std::fprintf(stderr,
                 "usage: %s SCENARIO [--expect KIND[,KIND...]] "
                 "[--search full|bound:N]\n       %s --list\n"
                 "scenarios:\n",
                 prog, prog);
    for (size_t i = 0; i < n; i++) {
        std::fprintf(stderr, "  %-22s %s\n", sc[i].name, sc[i].what);
    }
    std::fprintf(stderr, "kinds: ok assert race uninit deadlock leak "
                         "livelock\n");
    return 2;
}

inline int drive(int argc, char **argv, const char *prog, const scenario *sc,
                 size_t n)
{
    if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) {
            std::printf("%s\n", sc[i].name);
        }
        return 0;
    }
    if (argc < 2) {
        return usage(prog, sc, n);
    }
    const scenario *s = nullptr;
    for (size_t i = 0; i < n; i++) {
        if (std::strcmp(argv[1], sc[i].name) == 0) {
            s = &sc[i];
        }
    }
    if (s == nullptr) {
        std::fprintf(stderr, "%s: unknown scenario '%s'\n", prog, argv[1]);
        return usage(prog, sc, n);
    }
    std::string expect = "ok";
    rl::test_params p;
    p.search_type = rl::sched_full;
    for (int i = 2; i < argc; i++) {
        if (std::strcmp(argv[i], "--expect") == 0 && i + 1 < argc) {
            expect = argv[++i];
        } else if (std::strcmp(argv[i], "--search") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            if (std::strcmp(v, "full") == 0) {
                p.search_type = rl::sched_full;
            } else if (std::strncmp(v, "bound:", 6) == 0) {
                p.search_type = rl::sched_bound;
                p.context_bound = (unsigned)std::atoi(v + 6);
            } else {
                return usage(prog, sc, n);
            }
        } else {
            return usage(prog, sc, n);
        }
    }
    /* Validate the kinds before running. */
    std::vector<std::string> want;
    for (size_t pos = 0; pos <= expect.size();) {
        size_t comma = expect.find(',', pos);
        if (comma == std::string::npos) {
            comma = expect.size();
        }
        std::string k = expect.substr(pos, comma - pos);
        bool known = false;
        for (const kind_name &kn : kinds) {
            known = known || k == kn.key;
        }
        if (!known) {
            std::fprintf(stderr, "%s: unknown kind '%s'\n", prog, k.c_str());
            return usage(prog, sc, n);
        }
        want.push_back(k);
        pos = comma + 1;
    }
    auto t0 = std::chrono::steady_clock::now();
    s->run(p);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0)
                  .count();

    bool pass = false;
    for (const std::string &k : want) {
        for (const kind_name &kn : kinds) {
            pass = pass || (k == kn.key && p.test_result == kn.result);
        }
    }
    std::printf("model: %s %s: %s after %llu iterations, %lld ms "
                "(expected %s): %s\n",
                prog, s->name, rl::test_result_str(p.test_result),
                (unsigned long long)p.stop_iteration, (long long)ms,
                expect.c_str(), pass ? "PASS" : "FAIL");
    std::fflush(stdout);
    return pass ? 0 : 1;
}

} /* namespace weft_model */

#endif /* WEFT_MODEL_DRIVER_HPP */
