/*
 * weft_model_relacy.hpp - the Relacy prelude of the model-checking build
 * (tests/model/, C++ only).
 *
 * Every system header that the model harnesses or the primitives/ sources
 * they compile need is included first, then Relacy's engine headers. We
 * take the headers that relacy.hpp includes but not relacy.hpp itself: it
 * #defines new, delete, malloc, free, assert and errno, and its stdlib/
 * emulation #defines FUTEX_WAIT, FUTEX_WAKE, EINVAL and the pthread names,
 * which would change what primitives/*.c compile to. Relacy's global
 * operator new/delete (context.hpp) stay: inside a model run they are
 * Relacy's tracked allocator, so a shadow that is not freed at the end of
 * an iteration is reported as a leak.
 */
#ifndef WEFT_MODEL_RELACY_HPP
#define WEFT_MODEL_RELACY_HPP

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <typeinfo>

#include <relacy/base.hpp>
#include <relacy/context.hpp>
#include <relacy/context_base_impl.hpp>
#include <relacy/backoff.hpp>
#include <relacy/atomic_fence.hpp>
#include <relacy/atomic.hpp>
#include <relacy/var.hpp>
#include <relacy/thread_local.hpp>
#include <relacy/test_suite.hpp>
#include <relacy/dyn_thread.hpp>

/* Relacy's engine needs their definitions; unlike stdlib/pthread.hpp and
 * stdlib/windows.hpp they define no macros. */
#include <relacy/stdlib/mutex.hpp>
#include <relacy/stdlib/condition_variable.hpp>
#include <relacy/stdlib/semaphore.hpp>
#include <relacy/stdlib/event.hpp>

#endif /* WEFT_MODEL_RELACY_HPP */
