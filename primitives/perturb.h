/*
 * perturb.h - private header of perturb.c. weft__perturb() is declared in
 * atomics.h, which calls it; it exists only in WEFT_PERTURB builds.
 */
#ifndef WEFT_PRIMITIVES_PERTURB_H
#define WEFT_PRIMITIVES_PERTURB_H

#include "atomics.h"

#endif
