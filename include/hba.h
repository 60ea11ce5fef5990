/*
 * hba.h - auth_type = hba: the pg_hba.conf subset PgBouncer understands
 * (auth_hba_file) and the ident maps of auth_ident_file.
 *
 * HBA lines:  TYPE DATABASE USER [ADDRESS [MASK]] METHOD [map=NAME]
 *   TYPE      local | host | hostssl | hostnossl
 *   DATABASE  all | replication | sameuser | name | @file, comma separated
 *   USER      all | name | @file, comma separated
 *   ADDRESS   all | IPv4/IPv6 CIDR | address followed by a MASK field (not for local)
 *   METHOD    trust | reject | md5 | password | scram-sha-256 | peer | cert | oidc
 * `@file` names a file (relative to the including file's directory) whose
 * words, separated by blanks, commas or newlines, are spliced in. A quoted
 * word ("all") is a plain name, never a keyword. '#' starts a comment.
 *
 * Ident lines:  MAPNAME SYSTEM-USER PG-USER   (PG-USER may be `all`)
 *
 * Parsing is strict and bounded: any error makes the whole file invalid and
 * comes back as "file:line: reason", so a RELOAD keeps the running rules.
 * Rules are matched first to last, like PostgreSQL: the first line whose
 * type, database, user and address all match decides the method.
 */
#ifndef PV_HBA_H
#define PV_HBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "config.h"

struct pv_socket;

enum hba_conn {
	HBA_LOCAL,
	HBA_HOST,
	HBA_HOSTSSL,
	HBA_HOSTNOSSL,
};

/* A DATABASE or USER field: keywords as flags, everything else as names. */
#define HBA_NAME_ALL         0x1
#define HBA_NAME_SAMEUSER    0x2
#define HBA_NAME_REPLICATION 0x4

struct hba_names {
	unsigned flags;
	char **names;
	size_t count;
};

struct hba_rule {
	int line;
	enum hba_conn conn;
	struct hba_names dbs;
	struct hba_names users;
	bool addr_all;    /* `all`, or a local line */
	int family;       /* AF_INET / AF_INET6 when !addr_all */
	uint8_t addr[16]; /* network address, already masked */
	uint8_t mask[16];
	enum auth_type method; /* AUTH_TRUST, AUTH_REJECT, AUTH_MD5, AUTH_PLAIN, ... */
	char *map;             /* map= option, NULL when absent */
};

struct hba {
	struct hba_rule *rules;
	size_t count;
};

struct ident_entry {
	char *map;
	char *sysuser;
	char *pguser;
	bool pg_all; /* unquoted `all` */
};

struct ident_map {
	struct ident_entry *entries;
	size_t count;
};

/*
 * Parse an HBA image. `origin` is the file's path: it names the file in
 * errors and anchors relative @file includes. NULL + "origin:line: reason".
 */
struct hba *hba_parse(const char *text, size_t len, const char *origin, char *err, size_t errlen);
struct hba *hba_load(const char *path, char *err, size_t errlen);
void hba_free(struct hba *h);

/*
 * The first rule matching the connection, or NULL ("no authentication method
 * is found"). addr is the client's address (ignored when is_unix).
 */
const struct hba_rule *hba_match(const struct hba *h, bool is_unix, bool is_tls,
                                 const struct sockaddr *addr, const char *db, const char *user,
                                 bool is_replication);

struct ident_map *ident_parse(const char *text, size_t len, const char *origin, char *err,
                              size_t errlen);
struct ident_map *ident_load(const char *path, char *err, size_t errlen);
void ident_free(struct ident_map *m);
/*
 * May system user `sysuser` log in as `pguser`? With map == NULL the names
 * must be equal; with a map, an entry (map, sysuser, pguser|all) must exist.
 */
bool ident_allows(const struct ident_map *m, const char *map, const char *sysuser,
                  const char *pguser);

/*
 * The running rules. hba_reload() parses what `cf` names (auth_hba_file when
 * auth_type = hba, auth_ident_file when set) and replaces the running set
 * only if everything parsed; on failure the old set stays and err says why.
 */
bool hba_reload(const struct pv_config *cf, char *err, size_t errlen);
const struct hba *hba_active(void);
const struct ident_map *ident_active(void);

/* TLS facts about a client (tls.c), for hostssl/hostnossl and the cert method. */
bool hba_sock_is_tls(struct pv_socket *c);
bool hba_sock_cert_name(struct pv_socket *c, char *buf, size_t len);

#endif
