/* uuid.h - random identifiers in the canonical 36-character UUID text, for every id a
 * service makes (users, products, reservations, orders, payments, events). */
#ifndef POLYSHOP_UUID_H
#define POLYSHOP_UUID_H
#include "polyshop/arena.h"

/* Version 4 (RFC 9562): 122 random bits. In the arena; lower-case hex. */
char *ps_uuid_v4(ps_arena_t *a);

/* Version 7: 48 bits of Unix milliseconds, then 74 random bits. Ids made later sort later,
 * so rows keyed by them append to the same B-tree pages instead of dirtying a random leaf
 * of every index; they still cannot be guessed. */
char *ps_uuid_v7(ps_arena_t *a);
#endif
