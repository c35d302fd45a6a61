/*
 * status.h - private header of status.c. The public table lives in
 * <weft/status.h>; this file exists so that every .c has its header pair.
 */
#ifndef WEFT_PRIMITIVES_STATUS_H
#define WEFT_PRIMITIVES_STATUS_H

#include <weft/status.h>

#endif
