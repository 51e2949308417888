/*
 * CRC-32C: slicing-by-8 tables, plus the SSE4.2 `crc32` instruction when the
 * CPU has it (checked at run time with __builtin_cpu_supports, so one binary
 * runs everywhere).
 *
 * Slicing-by-8: table[0] is the classic byte-at-a-time table; table[k][b] is
 * the CRC of byte b followed by k zero bytes, so eight input bytes are folded
 * with eight independent lookups instead of eight dependent ones.
 *
 * The pre- and post-inversion (~crc) is done here, so callers chain plain
 * CRC values: crc32c_extend(crc32c_value(a), b) == crc32c_value(a || b).
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* reflected 0x1EDC6F41 */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static int use_hw;

static void table_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = table[0][b];
        for (int t = 1; t < 8; t++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[t][b] = c;
        }
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t sw_update(uint32_t c, const unsigned char *p, size_t len)
{
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
            table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
            table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
            table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_HW 1
__attribute__((target("sse4.2"))) static uint32_t
hw_update(uint32_t c, const unsigned char *p, size_t len)
{
    uint64_t c64;
    while (len > 0 && ((uintptr_t)p & 7) != 0) {
        c = __builtin_ia32_crc32qi(c, *p++);
        len--;
    }
    c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len > 0) {
        c = __builtin_ia32_crc32qi(c, *p++);
        len--;
    }
    return c;
}
#endif

uint32_t crc32c_extend_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&table_once, table_init);
    return ~sw_update(~crc, buf, len);
}

uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&table_once, table_init);
#ifdef CRC32C_HAVE_HW
    if (use_hw) {
        return ~hw_update(~crc, buf, len);
    }
#endif
    return ~sw_update(~crc, buf, len);
}

uint32_t crc32c_value(const void *buf, size_t len)
{
    return crc32c_extend(0, buf, len);
}

int crc32c_hw_available(void)
{
    pthread_once(&table_once, table_init);
    return use_hw;
}
