/*
 * CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
 * checksum of every WAL record (storage/wal_record.c).
 *
 * Castagnoli rather than the zlib CRC because it detects more error patterns
 * at record sizes we use and because x86-64 has an instruction for it
 * (SSE4.2 `crc32`); etcd's WAL uses the same polynomial (wal/wal.go:
 * crcTable = crc32.MakeTable(crc32.Castagnoli)).
 *
 * Thread-safe: the tables are built once, at first use, under pthread_once.
 */
#ifndef KEEL_CRC32C_H
#define KEEL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of len bytes at buf. crc32c_value("123456789", 9) == 0xE3069283. */
uint32_t crc32c_value(const void *buf, size_t len);

/* Continue a CRC: crc32c_extend(crc32c_value(a, n), b, m) equals the CRC of
 * a followed by b. crc32c_extend(0, buf, len) == crc32c_value(buf, len). */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* The portable slicing-by-8 path, whatever the CPU supports (tests compare it
 * with the hardware path). */
uint32_t crc32c_extend_sw(uint32_t crc, const void *buf, size_t len);

/* Whether crc32c_extend uses the SSE4.2 instruction on this machine. */
int crc32c_hw_available(void);

#endif /* KEEL_CRC32C_H */
