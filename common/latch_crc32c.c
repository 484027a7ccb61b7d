/*
 * latch_crc32c.c — table-driven CRC-32C, eight bytes per step (slicing-by-8).
 *
 * The tables are built once on first use; building them twice from two threads writes the
 * same values, and the flag is only set after the tables are complete.
 */
#include "latch_crc32c.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED 0x82f63b78u

static uint32_t crc_table[8][256];
static atomic_bool crc_table_ready;

static void crc_table_build(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        }
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc_table[0][c & 0xffu] ^ (c >> 8);
            crc_table[k][n] = c;
        }
    }
    atomic_store_explicit(&crc_table_ready, true, memory_order_release);
}

uint32_t latch_crc32c(uint32_t crc, const void *p, size_t len)
{
    const unsigned char *b = p;

    if (!atomic_load_explicit(&crc_table_ready, memory_order_acquire)) {
        crc_table_build();
    }
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo =
            (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        uint32_t hi =
            (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        lo ^= crc;
        crc = crc_table[7][lo & 0xffu] ^ crc_table[6][(lo >> 8) & 0xffu] ^
              crc_table[5][(lo >> 16) & 0xffu] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xffu] ^
              crc_table[2][(hi >> 8) & 0xffu] ^ crc_table[1][(hi >> 16) & 0xffu] ^
              crc_table[0][hi >> 24];
        b += 8;
        len -= 8;
    }
    while (len-- > 0) {
        crc = crc_table[0][(crc ^ *b++) & 0xffu] ^ (crc >> 8);
    }
    return ~crc;
}
