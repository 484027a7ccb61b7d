/*
 * latch_crc32c.h — CRC-32C (Castagnoli), the checksum on persisted records.
 *
 * store/ seals every Raft log entry, hard state and snapshot with it and verifies it after
 * every read (STYLE §5: pair the checksum before the write with the check after the read).
 * Software slicing-by-8; the same polynomial as iSCSI, ext4 metadata and etcd's WAL.
 */
#ifndef LATCH_CRC32C_H
#define LATCH_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes at p and returns the new value. */
uint32_t latch_crc32c(uint32_t crc, const void *p, size_t len);

#endif /* LATCH_CRC32C_H */
