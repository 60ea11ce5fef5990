/*
 * audit_verify.c - `pgvigil-audit verify`: recompute every event hash and the
 * chain across files, and name the first broken link with its file:line and
 * kind (edited event, deleted event, reordered, truncated line, missing file,
 * bad header). The rules are in doc/recordings.md "Verification".
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "recorder.h"

static const char zero_hash[REC_HASH_HEX_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct chain {
	const char *key;
	json_t *deleted; /* object: names of files that retention deleted */
	bool started;    /* seen the first event */
	uint64_t next_seq;
	char prev[REC_HASH_HEX_LEN + 1];
	const char *prev_name; /* previous file present in the directory */
};

static int broken(const struct audit_file *f, size_t line, const char *kind, const char *detail)
{
	printf("BROKEN: %s:%zu: %s: %s\n", f->name, line, kind, detail);
	return 1;
}

static json_t *parse_line(const struct audit_line *l)
{
	return json_loadb(l->text, l->len, 0, NULL);
}

/* Pass 1: collect the files retention says it deleted (trusted only after pass 2). */
static int collect_deleted(const struct audit_dir *d, json_t *deleted)
{
	for (size_t i = 0; i < d->n; i++) {
		struct audit_line *lines;
		size_t n;

		if (audit_read_file(&d->files[i], &lines, &n) < 0)
			return -1;
		for (size_t j = 0; j < n; j++) {
			json_t *ev = parse_line(&lines[j]), *del, *it;
			size_t k;

			const char *type = json_string_value(json_object_get(ev, "type"));

			if (!type || strcmp(type, "retention") != 0) {
				json_decref(ev);
				continue;
			}
			del = json_object_get(ev, "deleted");
			json_array_foreach(del, k, it)
			{
				const char *name = json_string_value(json_object_get(it, "file"));
				if (name)
					json_object_set_new(deleted, name, json_true());
			}
			json_decref(ev);
		}
		audit_lines_free(lines, n);
	}
	return 0;
}

static bool has_seq_ahead(struct audit_line *lines, size_t from, size_t n, uint64_t seq)
{
	for (size_t j = from; j < n; j++) {
		json_t *ev = parse_line(&lines[j]);
		bool hit = ev && (uint64_t)json_integer_value(json_object_get(ev, "seq")) == seq;
		json_decref(ev);
		if (hit)
			return true;
	}
	return false;
}

/* The first line of a file: a file_header naming this file and its predecessor. */
static int check_header(struct chain *c, const struct audit_file *f, json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *file = json_string_value(json_object_get(ev, "file"));
	const char *pf = json_string_value(json_object_get(ev, "prev_file"));
	const char *head = json_string_value(json_object_get(ev, "chain_head"));
	const char *prev = json_string_value(json_object_get(ev, "prev"));
	char msg[512];

	if (!type || strcmp(type, "file_header") != 0)
		return broken(f, 1, "bad header", "first event is not a file_header");
	if (!file || strcmp(file, f->name) != 0)
		return broken(f, 1, "bad header", "header names a different file (renamed?)");
	if (!head || !prev || strcmp(head, prev) != 0)
		return broken(f, 1, "bad header", "chain_head differs from prev");
	if (c->prev_name && (!pf || strcmp(pf, c->prev_name) != 0)) {
		snprintf(msg, sizeof(msg), "previous file %s is missing (follows %s here)",
		         pf ? pf : "(none)", c->prev_name);
		return broken(f, 1, "missing file", msg);
	}
	if (!c->prev_name && pf && !json_object_get(c->deleted, pf)) {
		snprintf(msg, sizeof(msg),
		         "chain continues from %s, which is absent and not recorded by retention",
		         pf);
		return broken(f, 1, "missing file", msg);
	}
	if (!c->prev_name && !pf &&
	    (strcmp(prev, zero_hash) != 0 || json_integer_value(json_object_get(ev, "seq")) != 1))
		return broken(
		    f, 1, "bad header",
		    "first file of the recording does not start the chain (seq 1, zero prev)");
	return 0;
}

/* seq and prev against the chain so far. */
static int check_link(struct chain *c, const struct audit_file *f, struct audit_line *lines,
                      size_t j, size_t n, json_t *ev)
{
	uint64_t seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
	const char *prev = json_string_value(json_object_get(ev, "prev"));
	char msg[256];

	if (!c->started)
		return 0;
	if (seq != c->next_seq) {
		bool later = seq > c->next_seq && !has_seq_ahead(lines, j + 1, n, c->next_seq);
		snprintf(msg, sizeof(msg), "expected seq %llu, found %llu",
		         (unsigned long long)c->next_seq, (unsigned long long)seq);
		return broken(f, j + 1, later ? "deleted event" : "reordered", msg);
	}
	if (!prev || strcmp(prev, c->prev) != 0)
		return broken(f, j + 1, "edited event",
		              "prev does not match the previous event's hash "
		              "(the previous event was altered and rehashed)");
	return 0;
}

static int check_line(struct chain *c, const struct audit_file *f, struct audit_line *lines,
                      size_t j, size_t n)
{
	char hash[REC_HASH_HEX_LEN + 1], calc[REC_HASH_HEX_LEN + 1], *body;
	const char *kind = j == 0 ? "bad header" : "edited event";
	size_t blen;
	json_t *ev;
	int rc;

	if (!lines[j].newline)
		return broken(f, j + 1, "truncated line", "the file ends inside this event");
	if (!rec_split_line(lines[j].text, lines[j].len, &body, &blen, hash))
		return broken(f, j + 1, kind, "not a recorded event (no trailing hash)");
	ev = json_loadb(body, blen, 0, NULL);
	if (!rec_hash_hex(c->key, body, blen, calc) || strcmp(calc, hash) != 0 || !ev) {
		free(body);
		json_decref(ev);
		return broken(f, j + 1, kind,
		              c->key ? "hash mismatch (content changed, or wrong HMAC key)"
		                     : "hash mismatch (content changed, or an HMAC recording)");
	}
	free(body);
	rc = j == 0 ? check_header(c, f, ev) : 0;
	rc = rc ? rc : check_link(c, f, lines, j, n, ev);
	if (rc == 0) {
		c->started = true;
		c->next_seq = (uint64_t)json_integer_value(json_object_get(ev, "seq")) + 1;
		memcpy(c->prev, hash, sizeof(c->prev));
	}
	json_decref(ev);
	return rc;
}

static int verify_file(struct chain *c, const struct audit_file *f, uint64_t *events)
{
	struct audit_line *lines;
	size_t n;
	int rc = 0;

	if (audit_read_file(f, &lines, &n) < 0) {
		fprintf(stderr, "pgvigil-audit: cannot read %s\n", f->path);
		return 2;
	}
	if (n == 0)
		rc = broken(f, 1, "bad header", "empty file");
	for (size_t j = 0; rc == 0 && j < n; j++)
		rc = check_line(c, f, lines, j, n);
	*events += n;
	audit_lines_free(lines, n);
	c->prev_name = f->name;
	return rc;
}

int audit_verify(const char *dir, const char *key)
{
	struct chain c = {.key = key};
	struct audit_dir d;
	uint64_t events = 0;
	int rc = 0;

	if (audit_list(dir, &d) < 0)
		return 2;
	c.deleted = json_object();
	if (!c.deleted || collect_deleted(&d, c.deleted) < 0) {
		fprintf(stderr, "pgvigil-audit: cannot read %s\n", dir);
		rc = 2;
	}
	for (size_t i = 0; rc == 0 && i < d.n; i++)
		rc = verify_file(&c, &d.files[i], &events);
	if (rc == 0)
		printf("OK: %llu events in %zu files\n", (unsigned long long)events, d.n);
	json_decref(c.deleted);
	audit_dir_free(&d);
	return rc;
}
