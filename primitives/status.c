/*
 * status.c - names and messages of weft_status_t, generated from
 * WEFT_STATUS_MAP so that the enum and its strings cannot drift.
 */
#include "status.h"

#include <weft/status.h>

const char *
weft_status_name(int status)
{
    switch (status) {
#define WEFT__STATUS_NAME(name, value, msg)                                   \
    case value:                                                               \
        return "WEFT_" #name;
        WEFT_STATUS_MAP(WEFT__STATUS_NAME)
#undef WEFT__STATUS_NAME
    default:
        return "WEFT_UNKNOWN";
    }
}

const char *
weft_status_str(int status)
{
    switch (status) {
#define WEFT__STATUS_STR(name, value, msg)                                    \
    case value:                                                               \
        return msg;
        WEFT_STATUS_MAP(WEFT__STATUS_STR)
#undef WEFT__STATUS_STR
    default:
        return status >= WEFT_EUSER ? "application-defined failure"
                                   : "unknown status";
    }
}
