/*
 * Bump arena: a singly linked list of blocks, newest first; allocations bump
 * an offset in the head block. protobuf-c's free callback is a no-op because
 * the arena frees everything at once.
 */
#include "keel_arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_DEFAULT_BLOCK (16 * 1024)
#define ARENA_ALIGN alignof(max_align_t)

struct keel_arena_block
{
    struct keel_arena_block *next;
    size_t size; /* usable bytes in data[] */
    size_t off;  /* next free byte in data[] */
    alignas(max_align_t) unsigned char data[];
};

static void *pb_alloc(void *data, size_t size)
{
    return keel_arena_alloc(data, size);
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

void keel_arena_init(struct keel_arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size != 0 ? block_size : ARENA_DEFAULT_BLOCK;
    a->used = 0;
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
}

static struct keel_arena_block *block_new(size_t size)
{
    struct keel_arena_block *b = malloc(sizeof *b + size);
    if (b == NULL) {
        return NULL;
    }
    b->next = NULL;
    b->size = size;
    b->off = 0;
    return b;
}

void *keel_arena_alloc(struct keel_arena *a, size_t n)
{
    size_t need = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (need < n) {
        return NULL; /* overflow */
    }
    if (need == 0) {
        need = ARENA_ALIGN;
    }
    struct keel_arena_block *b = a->head;
    if (b == NULL || b->size - b->off < need) {
        if (need > a->block_size) {
            /* A big allocation gets its own block, linked behind the head so
             * the head's free space stays usable. */
            struct keel_arena_block *big = block_new(need);
            if (big == NULL) {
                return NULL;
            }
            big->off = need;
            if (b == NULL) {
                a->head = big;
            } else {
                big->next = b->next;
                b->next = big;
            }
            a->used += n;
            return big->data;
        }
        b = block_new(a->block_size);
        if (b == NULL) {
            return NULL;
        }
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->off;
    b->off += need;
    a->used += n;
    return p;
}

void *keel_arena_dup(struct keel_arena *a, const void *p, size_t n)
{
    void *q = keel_arena_alloc(a, n);
    if (q != NULL && n != 0) {
        memcpy(q, p, n);
    }
    return q;
}

void keel_arena_reset(struct keel_arena *a)
{
    struct keel_arena_block *keep = NULL;
    struct keel_arena_block *b = a->head;
    while (b != NULL) {
        struct keel_arena_block *next = b->next;
        if (keep == NULL && b->size == a->block_size) {
            keep = b;
            keep->off = 0;
            keep->next = NULL;
        } else {
            free(b);
        }
        b = next;
    }
    a->head = keep;
    a->used = 0;
}

void keel_arena_free(struct keel_arena *a)
{
    struct keel_arena_block *b = a->head;
    while (b != NULL) {
        struct keel_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}
