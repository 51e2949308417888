/*
 * storage/identity.h: a member's identity in its data dir.
 *
 * etcd derives a new member's and cluster's ids from the initial cluster
 * (etcdserver/api/membership: NewMember, RaftCluster.genID) and keeps them in
 * the WAL metadata. keel derives them the same way and keeps them, with the
 * initial voters, in <data-dir>/member/keel-identity, written (fsync +
 * rename + directory fsync) before the first WAL record, so a data dir that
 * has a WAL always has its identity. The server (new cluster) and keelctl
 * (snapshot restore) both write it with identity_save.
 *
 * File format, text: "member <16 hex> cluster <16 hex>\n" then one
 * "voter <16 hex>\n" per initial voter. If you change it, old data dirs
 * must still load.
 */
#ifndef KEEL_IDENTITY_H
#define KEEL_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

/* Most voters a keel-identity file holds. */
#define IDENTITY_MAX_VOTERS 32

/* A member id: the first 8 bytes (big endian) of sha1(sorted peer URLs
 * concatenated + cluster token). 0 when out of memory. */
uint64_t identity_member_id(const char *const *peer_urls,
                            size_t n,
                            const char *cluster_token);

/* The cluster id: the same over the sorted member ids (8 bytes big endian
 * each); at most IDENTITY_MAX_VOTERS ids are used. */
uint64_t identity_cluster_id(const uint64_t *member_ids, size_t n);

/* Read <data_dir>/member/keel-identity. voters has room for
 * IDENTITY_MAX_VOTERS. Returns 0, -errno (ENOENT: no file) or
 * KEEL_ECORRUPT. */
int identity_load(const char *data_dir,
                  uint64_t *member,
                  uint64_t *cluster,
                  uint64_t *voters,
                  size_t *n_voters);

/* Write it durably; <data_dir>/member must exist. 0 or -errno. */
int identity_save(const char *data_dir,
                  uint64_t member,
                  uint64_t cluster,
                  const uint64_t *voters,
                  size_t n_voters);

#endif /* KEEL_IDENTITY_H */
