/*
 * audit.h - shared pieces of pgvigil-audit: listing a recording directory in
 * chain order and loading one file's lines. verify lives in audit_verify.c,
 * the other subcommands in pgvigil-audit.c.
 */
#ifndef PV_AUDIT_H
#define PV_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct audit_line {
	char *text; /* without the newline, NUL-terminated */
	size_t len;
	bool newline; /* false: the file ended inside this line */
};

struct audit_file {
	char *name;   /* final name (pgvigil-...jsonl) */
	char *path;   /* path on disk (may end in .partial) */
	uint64_t seq; /* first seq, from the name */
};

struct audit_dir {
	struct audit_file *files; /* sorted by first seq */
	size_t n;
};

/* -1 with a message on stderr when the directory cannot be read. */
int audit_list(const char *dir, struct audit_dir *out);
void audit_dir_free(struct audit_dir *d);

/*
 * Read a file's lines. A .partial file that pgvigil renamed to its final name
 * since the directory was listed (rotation, on a live directory) is read under
 * that name. -1 on I/O error or out of memory.
 */
int audit_read_file(const struct audit_file *f, struct audit_line **lines, size_t *n);
void audit_lines_free(struct audit_line *lines, size_t n);

/* verify: 0 intact, 1 broken (first break reported on stdout), 2 usage / I/O error. */
int audit_verify(const char *dir, const char *key);

#endif
