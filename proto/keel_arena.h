/*
 * A bump arena: many small allocations freed together. Used per request
 * (unpacking a protobuf, building its response) so that one request's memory
 * is released with one call whatever path the request took.
 *
 * Ownership: everything allocated from an arena belongs to it and is valid
 * until keel_arena_reset() or keel_arena_free(). Not thread-safe: an arena is
 * used by one thread at a time.
 */
#ifndef KEEL_ARENA_H
#define KEEL_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct keel_arena_block;

struct keel_arena
{
    struct keel_arena_block *head; /* newest block first */
    size_t block_size;             /* size of ordinary blocks */
    size_t used;                   /* bytes handed out, for limits/metrics */
    ProtobufCAllocator pb;         /* protobuf-c allocator over this arena */
};

/* Initialise an empty arena; block_size 0 picks a default (16 KiB). Does not
 * allocate until the first keel_arena_alloc(). */
void keel_arena_init(struct keel_arena *a, size_t block_size);

/* Aligned (max_align_t) memory of n bytes, or NULL when out of memory.
 * Requests larger than block_size get a block of their own. */
void *keel_arena_alloc(struct keel_arena *a, size_t n);

/* Copy of [p, p+n) in the arena (n may be 0; returns non-NULL then too). */
void *keel_arena_dup(struct keel_arena *a, const void *p, size_t n);

/* Free everything but keep the first block for reuse. */
void keel_arena_reset(struct keel_arena *a);

/* Free everything. The arena may be initialised again afterwards. */
void keel_arena_free(struct keel_arena *a);

#endif /* KEEL_ARENA_H */
