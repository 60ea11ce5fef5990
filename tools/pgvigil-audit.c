/*
 * pgvigil-audit.c - the recording tool shipped with pgvigil (doc/recordings.md):
 *   verify DIR [--hmac-key-file F]          check every hash and the chain
 *   sessions DIR [filters] [--json]         list sessions with identity and times
 *   replay DIR [--session ID] [filters] [--json]   a session's transcript
 *   selftest-write DIR N [--rotate-size B] [--max-bytes B] [--hmac-key-file F]
 *       (test aid, not for production: N synthetic session events written
 *       through the real recorder, used by test/integration/test_audit_tool.py)
 * Filters: --identity ID, --since TS, --until TS, --class C.
 * Owns the command line, directory listing, sessions and replay; verify is in
 * audit_verify.c.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "recorder.h"

struct opts {
	const char *dir;
	const char *session, *identity, *since, *until, *class_;
	const char *key_file;
	char *key;
	bool json;
	uint64_t rotate_size, max_bytes;
	long count;
};

static const char usage[] =
    "Usage: pgvigil-audit verify DIR [--hmac-key-file F]\n"
    "       pgvigil-audit sessions DIR [--identity ID] [--since TS] [--until TS] [--json]\n"
    "       pgvigil-audit replay DIR [--session ID] [--identity ID] [--since TS]\n"
    "                            [--until TS] [--class C] [--json]\n";

/* --- directory and file reading ---------------------------------------------------------- */

static int cmp_file(const void *a, const void *b)
{
	const struct audit_file *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* pgvigil-<stamp>-<seq>.jsonl[.partial] -> final name and seq. */
static bool parse_name(const char *d, char **name, uint64_t *seq)
{
	size_t len = strlen(d);
	const char *dash;
	char *end;

	if (strncmp(d, "pgvigil-", 8) != 0)
		return false;
	if (len > 8 && strcmp(d + len - 8, ".partial") == 0)
		len -= 8;
	if (len < 7 || strncmp(d + len - 6, ".jsonl", 6) != 0)
		return false;
	*name = strndup(d, len);
	if (!*name)
		return false;
	(*name)[len - 6] = '\0';
	dash = strrchr(*name, '-');
	errno = 0;
	*seq = dash ? strtoull(dash + 1, &end, 10) : 0;
	memcpy(*name + len - 6, ".jsonl", 7);
	if (!dash || errno || end != *name + len - 6) {
		free(*name);
		return false;
	}
	return true;
}

static bool add_file(struct audit_dir *out, size_t *cap, const char *dir, const char *d)
{
	struct audit_file f;

	if (!parse_name(d, &f.name, &f.seq))
		return true;
	if (asprintf(&f.path, "%s/%s", dir, d) < 0) {
		free(f.name);
		return false;
	}
	if (out->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct audit_file *g = realloc(out->files, ncap * sizeof(*g));
		if (!g) {
			free(f.name);
			free(f.path);
			return false;
		}
		out->files = g;
		*cap = ncap;
	}
	out->files[out->n++] = f;
	return true;
}

int audit_list(const char *dir, struct audit_dir *out)
{
	DIR *dh = opendir(dir);
	struct dirent *de;
	size_t cap = 0;
	bool ok = true;

	out->files = NULL;
	out->n = 0;
	if (!dh) {
		fprintf(stderr, "pgvigil-audit: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while (ok && (de = readdir(dh)) != NULL)
		ok = add_file(out, &cap, dir, de->d_name);
	closedir(dh);
	if (!ok) {
		fprintf(stderr, "pgvigil-audit: out of memory\n");
		audit_dir_free(out);
		return -1;
	}
	if (out->n > 1)
		qsort(out->files, out->n, sizeof(*out->files), cmp_file);
	return 0;
}

void audit_dir_free(struct audit_dir *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->files[i].name);
		free(d->files[i].path);
	}
	free(d->files);
	d->files = NULL;
	d->n = 0;
}

/* f's stream: its listed path, or its final name when pgvigil renamed the .partial meanwhile. */
static FILE *open_audit_file(const struct audit_file *file)
{
	size_t len = strlen(file->path);
	FILE *f = fopen(file->path, "r");
	char *final;

	if (f || errno != ENOENT || len <= 8 || strcmp(file->path + len - 8, ".partial") != 0)
		return f;
	if (!(final = strndup(file->path, len - 8)))
		return NULL;
	f = fopen(final, "r");
	free(final);
	return f;
}

int audit_read_file(const struct audit_file *file, struct audit_line **lines, size_t *n)
{
	FILE *f = open_audit_file(file);
	char *buf = NULL;
	size_t cap = 0, lcap = 0;
	ssize_t len;

	*lines = NULL;
	*n = 0;
	if (!f)
		return -1;
	while ((len = getline(&buf, &cap, f)) > 0) {
		struct audit_line l = {.newline = buf[len - 1] == '\n'};

		l.len = (size_t)len - (l.newline ? 1 : 0);
		l.text = strndup(buf, l.len);
		if (*n == lcap) {
			size_t ncap = lcap ? lcap * 2 : 64;
			struct audit_line *g = l.text ? realloc(*lines, ncap * sizeof(*g)) : NULL;
			if (!g) {
				free(l.text);
				goto fail;
			}
			*lines = g;
			lcap = ncap;
		}
		if (!l.text)
			goto fail;
		(*lines)[(*n)++] = l;
	}
	free(buf);
	fclose(f);
	return 0;
fail:
	free(buf);
	fclose(f);
	audit_lines_free(*lines, *n);
	*lines = NULL;
	*n = 0;
	return -1;
}

void audit_lines_free(struct audit_line *lines, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lines[i].text);
	free(lines);
}

/* Call fn for every parsable event in chain order; stops when fn returns non-zero. */
static int each_event(const char *dir, int (*fn)(json_t *ev, void *arg), void *arg)
{
	struct audit_dir d;
	int rc = 0;

	if (audit_list(dir, &d) < 0)
		return 2;
	for (size_t i = 0; rc == 0 && i < d.n; i++) {
		struct audit_line *lines;
		size_t n;

		if (audit_read_file(&d.files[i], &lines, &n) < 0) {
			fprintf(stderr, "pgvigil-audit: cannot read %s\n", d.files[i].path);
			rc = 2;
			break;
		}
		for (size_t j = 0; rc == 0 && j < n; j++) {
			json_t *ev = json_loadb(lines[j].text, lines[j].len, 0, NULL);
			if (ev)
				rc = fn(ev, arg);
			json_decref(ev);
		}
		audit_lines_free(lines, n);
	}
	audit_dir_free(&d);
	return rc;
}

/* --- sessions ---------------------------------------------------------------------------- */

static const char *str_of(json_t *ev, const char *key)
{
	const char *s = json_string_value(json_object_get(ev, key));
	return s ? s : "";
}

static bool in_time(const struct opts *o, const char *ts)
{
	/* RFC3339 UTC stamps of one format compare correctly as strings. */
	if (o->since && strcmp(ts, o->since) < 0)
		return false;
	/* --until is inclusive of its prefix: --until 2026-11-22 keeps that whole day. */
	return !o->until || strncmp(ts, o->until, strlen(o->until)) <= 0;
}

struct sessions_ctx {
	const struct opts *o;
	json_t *list; /* session id -> {session, identity, start, end} in first-seen order */
};

static int session_event(json_t *ev, void *arg)
{
	struct sessions_ctx *c = arg;
	const char *type = str_of(ev, "type"), *id = str_of(ev, "session");
	json_t *s;

	if (!*id)
		return 0;
	if (strcmp(type, "session_start") == 0) {
		s = json_pack("{s:s,s:s,s:s,s:s,s:s,s:n}", "session", id, "identity",
		              str_of(ev, "identity"), "database", str_of(ev, "database"), "db_user",
		              str_of(ev, "db_user"), "start", str_of(ev, "ts"), "end");
		if (!s || json_object_set_new(c->list, id, s) < 0)
			return 2;
	} else if (strcmp(type, "session_end") == 0 && (s = json_object_get(c->list, id))) {
		json_object_set_new(s, "end", json_string(str_of(ev, "ts")));
	}
	return 0;
}

static bool session_matches(const struct opts *o, json_t *s)
{
	if (o->identity && strcmp(str_of(s, "identity"), o->identity) != 0)
		return false;
	return in_time(o, str_of(s, "start"));
}

static int cmd_sessions(const struct opts *o)
{
	struct sessions_ctx c = {o, json_object()};
	const char *id;
	json_t *s;
	int rc;

	if (!c.list)
		return 2;
	rc = each_event(o->dir, session_event, &c);
	json_object_foreach(c.list, id, s)
	{
		if (rc || !session_matches(o, s))
			continue;
		if (o->json) {
			json_dumpf(s, stdout, JSON_COMPACT | JSON_SORT_KEYS);
			putchar('\n');
		} else {
			printf("%s\t%s\t%s\t%s\n", id, str_of(s, "identity"), str_of(s, "start"),
			       json_is_string(json_object_get(s, "end")) ? str_of(s, "end") : "-");
		}
	}
	json_decref(c.list);
	return rc;
}

/* --- replay ------------------------------------------------------------------------------ */

struct replay_ctx {
	const struct opts *o;
	json_t *identity; /* session id -> identity */
	json_t *shown;    /* session id -> true when its last statement passed --class */
};

static void summary(json_t *ev, const char *type)
{
	if (strcmp(type, "statement") == 0)
		printf("%s", str_of(ev, "text"));
	else if (strcmp(type, "result") == 0)
		printf("%s rows=%lld duration_us=%lld sqlstate=%s", str_of(ev, "command_tag"),
		       json_integer_value(json_object_get(ev, "rows")),
		       json_integer_value(json_object_get(ev, "duration_us")),
		       str_of(ev, "sqlstate"));
	else if (strcmp(type, "session_start") == 0)
		printf("identity=%s db_user=%s database=%s", str_of(ev, "identity"),
		       str_of(ev, "db_user"), str_of(ev, "database"));
	else if (strcmp(type, "decision") == 0 || strcmp(type, "denial") == 0 ||
	         strcmp(type, "approval_request") == 0)
		printf("%s rule=%s approver=%s", str_of(ev, "decision"), str_of(ev, "rule"),
		       str_of(ev, "approver"));
	else if (strcmp(type, "admin") == 0)
		printf("%s", str_of(ev, "command"));
	else
		printf("%s", str_of(ev, "reason"));
}

/* --class: a statement passes on its class; a non-statement follows its statement. */
static bool class_passes(struct replay_ctx *c, json_t *ev, const char *id, const char *type)
{
	bool pass;

	if (!c->o->class_)
		return true;
	if (strcmp(type, "statement") != 0)
		return json_is_true(json_object_get(c->shown, id));
	pass = strcmp(str_of(ev, "class"), c->o->class_) == 0;
	json_object_set_new(c->shown, id, json_boolean(pass));
	return pass;
}

static int replay_event(json_t *ev, void *arg)
{
	struct replay_ctx *c = arg;
	const char *id = str_of(ev, "session"), *type = str_of(ev, "type");

	if (!*id || (c->o->session && strcmp(id, c->o->session) != 0))
		return 0;
	if (strcmp(type, "session_start") == 0)
		json_object_set_new(c->identity, id, json_string(str_of(ev, "identity")));
	if (c->o->identity && strcmp(str_of(c->identity, id), c->o->identity) != 0)
		return 0;
	if (!class_passes(c, ev, id, type) || !in_time(c->o, str_of(ev, "ts")))
		return 0;
	if (c->o->json) {
		json_dumpf(ev, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		putchar('\n');
		return 0;
	}
	printf("%s  %-8s  %-13s  ", str_of(ev, "ts"), id, type);
	summary(ev, type);
	putchar('\n');
	/* format 2: a statement may carry its first result (doc/recordings.md) */
	if (strcmp(type, "statement") == 0 && json_is_object(json_object_get(ev, "result"))) {
		printf("%s  %-8s  %-13s  ", str_of(ev, "ts"), id, "result");
		summary(json_object_get(ev, "result"), "result");
		putchar('\n');
	}
	return 0;
}

static int cmd_replay(const struct opts *o)
{
	struct replay_ctx c = {o, json_object(), json_object()};
	int rc = c.identity && c.shown ? each_event(o->dir, replay_event, &c) : 2;

	json_decref(c.identity);
	json_decref(c.shown);
	return rc;
}

/* --- selftest-write (test aid) ----------------------------------------------------------- */

static json_t *synthetic_event(long i, const char **type)
{
	long s = i / 4;
	char sid[32], text[64];

	snprintf(sid, sizeof(sid), "s%ld", s);
	switch (i % 4) {
	case 0:
		*type = "session_start";
		return json_pack("{s:s,s:s,s:s,s:s,s:s}", "session", sid, "identity",
		                 s % 2 ? "agent-b@example.com" : "agent-a@example.com", "provider",
		                 "test", "db_user", "app", "database", "shop");
	case 1:
		*type = "statement";
		snprintf(text, sizeof(text), "SELECT %ld /* synthetic */", i);
		return json_pack("{s:s,s:s,s:s,s:s}", "session", sid, "text", text, "class",
		                 s % 3 ? "read" : "write", "fingerprint", "0123456789abcdef");
	case 2:
		*type = "result";
		return json_pack("{s:s,s:s,s:i,s:i,s:s}", "session", sid, "command_tag", "SELECT 1",
		                 "rows", 1, "duration_us", 250, "sqlstate", "00000");
	default:
		*type = "session_end";
		return json_pack("{s:s,s:s}", "session", sid, "reason", "client closed");
	}
}

static int cmd_selftest_write(const struct opts *o)
{
	struct rec_config cfg = {.directory = (char *)o->dir,
	                         .rotate_size = o->rotate_size,
	                         .max_bytes = o->max_bytes,
	                         .fsync = REC_FSYNC_NEVER,
	                         .on_backpressure = REC_BP_BLOCK,
	                         .hmac_key = o->key};
	char err[512];
	struct recorder *r = recorder_start(&cfg, err, sizeof(err));

	if (!r) {
		fprintf(stderr, "pgvigil-audit: %s\n", err);
		return 2;
	}
	for (long i = 0; i < o->count; i++) {
		const char *type;
		json_t *ev = synthetic_event(i, &type);

		while (recorder_emit(r, type, ev) == REC_FULL)
			usleep(1000);
	}
	recorder_stop(r);
	return 0;
}

/* --- command line ------------------------------------------------------------------------ */

static char *read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	char *key = NULL;
	size_t cap = 0;
	ssize_t len;

	if (!f)
		return NULL;
	len = getline(&key, &cap, f);
	fclose(f);
	if (len <= 0) {
		free(key);
		return NULL;
	}
	while (len > 0 && (key[len - 1] == '\n' || key[len - 1] == '\r'))
		key[--len] = '\0';
	return key;
}

static int parse_opt(struct opts *o, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
	const char **slot = NULL;

	if (strcmp(a, "--json") == 0) {
		o->json = true;
		return 0;
	}
	if (strcmp(a, "--session") == 0)
		slot = &o->session;
	else if (strcmp(a, "--identity") == 0)
		slot = &o->identity;
	else if (strcmp(a, "--since") == 0)
		slot = &o->since;
	else if (strcmp(a, "--until") == 0)
		slot = &o->until;
	else if (strcmp(a, "--class") == 0)
		slot = &o->class_;
	else if (strcmp(a, "--hmac-key-file") == 0)
		slot = &o->key_file;
	if (v && slot) {
		*slot = v;
		(*i)++;
		return 0;
	}
	if (v && strcmp(a, "--rotate-size") == 0)
		o->rotate_size = strtoull(argv[++*i], NULL, 10);
	else if (v && strcmp(a, "--max-bytes") == 0)
		o->max_bytes = strtoull(argv[++*i], NULL, 10);
	else
		return -1;
	return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	int first = 3;

	if (argc < 3)
		return -1;
	o->dir = argv[2];
	if (strcmp(argv[1], "selftest-write") == 0) {
		if (argc < 4 || (o->count = strtol(argv[3], NULL, 10)) < 0)
			return -1;
		first = 4;
	}
	for (int i = first; i < argc; i++)
		if (parse_opt(o, argc, argv, &i) < 0)
			return -1;
	if (o->key_file && !(o->key = read_key(o->key_file))) {
		fprintf(stderr, "pgvigil-audit: cannot read key file %s\n", o->key_file);
		return -2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {0};
	int rc = parse_args(&o, argc, argv);

	if (rc == -2)
		return 2;
	if (rc < 0) {
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "verify") == 0)
		rc = audit_verify(o.dir, o.key);
	else if (strcmp(argv[1], "sessions") == 0)
		rc = cmd_sessions(&o);
	else if (strcmp(argv[1], "replay") == 0)
		rc = cmd_replay(&o);
	else if (strcmp(argv[1], "selftest-write") == 0)
		rc = cmd_selftest_write(&o);
	else {
		fputs(usage, stderr);
		rc = 2;
	}
	free(o.key);
	return rc;
}
