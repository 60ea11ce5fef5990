/*
 * test_recorder.c - unit tests for the session recorder (src/recorder.c,
 * src/recorder_file.c). The test thread plays the event loop: it emits events,
 * stalls the writer or injects write errors through the test hooks, and then
 * re-reads the directory, recomputing every hash and the chain itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recorder.h"
#include "recorder_file.h"
#include "recorder_ring.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static char tmpdir[256];

/* What check_dir found. */
struct scan {
	int files;
	int events;      /* all events, headers included */
	int user_events; /* events of type "ev" */
	int retention;   /* retention events */
	int recovery;    /* recovery events */
	bool partial;    /* a .partial file is present */
	uint64_t bytes;  /* total size of the files */
	json_t *deleted; /* names retention reported */
	char first_prev_file[128];
	int recycled_bad; /* test_recycled_events: "n" events whose members are not as emitted */
};

static int is_recording(const struct dirent *d)
{
	return strncmp(d->d_name, "pgvigil-", 8) == 0;
}

static void rm_rf(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	char path[512];

	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (names[i]->d_name[0] != '.')
			unlink(path);
		free(names[i]);
	}
	free(names);
	rmdir(dir);
}

/* Check one line: hash (recomputed here) and the chain; updates prev/seq. */
static void check_line(const char *key, char *line, size_t len, char *prev, uint64_t *seq,
                       json_t **out)
{
	char hash[REC_HASH_HEX_LEN + 1], calc[REC_HASH_HEX_LEN + 1], *body;
	size_t blen;
	json_t *ev;

	assert_true(rec_split_line(line, len, &body, &blen, hash));
	assert_true(rec_hash_hex(key, body, blen, calc));
	assert_string_equal(calc, hash);
	ev = json_loadb(body, blen, 0, NULL);
	free(body);
	assert_non_null(ev);
	assert_int_equal(json_integer_value(json_object_get(ev, "v")), REC_FORMAT_VERSION);
	if (*seq) {
		assert_int_equal(json_integer_value(json_object_get(ev, "seq")), *seq + 1);
		assert_string_equal(json_string_value(json_object_get(ev, "prev")), prev);
	}
	*seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
	memcpy(prev, hash, sizeof(hash));
	*out = ev;
}

static void note_event(struct scan *s, json_t *ev, int lineno, const char *name,
                       const char *prev_name)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *it;
	size_t k;

	s->events++;
	if (lineno == 1) {
		const char *pf = json_string_value(json_object_get(ev, "prev_file"));
		assert_string_equal(type, "file_header");
		assert_string_equal(json_string_value(json_object_get(ev, "file")), name);
		if (prev_name)
			assert_string_equal(pf, prev_name);
		else
			snprintf(s->first_prev_file, sizeof(s->first_prev_file), "%s",
			         pf ? pf : "");
	}
	if (strcmp(type, "ev") == 0)
		s->user_events++;
	if (strcmp(type, "ev") == 0 && json_object_get(ev, "n"))
		s->recycled_bad += (json_integer_value(json_object_get(ev, "n")) % 7 == 0) !=
		                   (json_object_get(ev, "big") != NULL) ||
		                   json_object_size(ev) != 6 + (json_object_get(ev, "big") != NULL);
	if (strcmp(type, "recovery") == 0)
		s->recovery++;
	if (strcmp(type, "retention") == 0) {
		s->retention++;
		json_array_foreach(json_object_get(ev, "deleted"), k, it) json_object_set(
		    s->deleted, json_string_value(json_object_get(it, "file")), json_true());
	}
}

/* Walk the directory in order and check everything; fills s. */
static void check_dir(const char *key, struct scan *s)
{
	struct dirent **names;
	int n = scandir(tmpdir, &names, is_recording, alphasort);
	char prev[REC_HASH_HEX_LEN + 1] = ZERO_HASH, path[512], *line = NULL;
	const char *prev_name = NULL;
	uint64_t seq = 0;
	size_t cap = 0;

	memset(s, 0, sizeof(*s));
	s->deleted = json_object();
	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		FILE *f;
		ssize_t len;
		int lineno = 0;
		struct stat st;

		s->partial |= strstr(names[i]->d_name, ".partial") != NULL;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]->d_name);
		assert_int_equal(stat(path, &st), 0);
		s->bytes += (uint64_t)st.st_size;
		f = fopen(path, "r");
		assert_non_null(f);
		while ((len = getline(&line, &cap, f)) > 0) {
			json_t *ev;
			assert_int_equal(line[len - 1], '\n');
			check_line(key, line, (size_t)len - 1, prev, &seq, &ev);
			note_event(s, ev, ++lineno, names[i]->d_name, prev_name);
			json_decref(ev);
		}
		fclose(f);
		s->files++;
		if (i > 0)
			free((char *)prev_name);
		prev_name = strdup(names[i]->d_name);
		free(names[i]);
	}
	if (n > 0)
		free((char *)prev_name);
	free(line);
	free(names);
}

static void scan_free(struct scan *s)
{
	json_decref(s->deleted);
}

static struct rec_config base_config(void)
{
	struct rec_config c = {.directory = tmpdir,
	                       .fsync = REC_FSYNC_NEVER,
	                       .on_backpressure = REC_BP_BLOCK,
	                       .queue_size = 64};
	return c;
}

static struct recorder *start(const struct rec_config *c)
{
	char err[256] = "";
	struct recorder *r = recorder_start(c, err, sizeof(err));
	if (!r)
		fail_msg("recorder_start: %s", err);
	return r;
}

/* Emit n "ev" events, waiting (as the loop would) whenever the queue is full. */
static void emit_n(struct recorder *r, int n)
{
	for (int i = 0; i < n; i++) {
		json_t *f = json_pack("{s:i,s:s}", "i", i, "text", "SELECT 'payload padding'");
		while (recorder_emit(r, "ev", f) == REC_FULL)
			usleep(1000);
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pv_test_rec_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(tmpdir);
	return 0;
}

static void test_rotation_and_chain(void **state)
{
	struct rec_config c = base_config();
	struct recorder *r;
	struct scan s;

	(void)state;
	c.rotate_size = 1500;
	c.fsync = REC_FSYNC_ALWAYS;
	r = start(&c);
	emit_n(r, 100);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_true(s.files > 3);
	assert_false(s.partial);
	assert_int_equal(s.user_events, 100);
	assert_int_equal(s.events, 100 + s.files);
	assert_string_equal(s.first_prev_file, "");
	scan_free(&s);

	/* A restart continues the same chain in a new file. */
	r = start(&c);
	emit_n(r, 5);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_int_equal(s.user_events, 105);
	scan_free(&s);
}

static void test_interval_rotation(void **state)
{
	struct rec_config c = base_config();
	struct recorder *r;
	struct scan s;

	(void)state;
	c.rotate_interval = 100 * 1000; /* 100 ms */
	c.fsync = REC_FSYNC_INTERVAL;
	r = start(&c);
	emit_n(r, 3);
	usleep(600 * 1000);
	emit_n(r, 3);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_true(s.files >= 2);
	assert_int_equal(s.user_events, 6);
	scan_free(&s);
}

static void test_retention_by_bytes(void **state)
{
	struct rec_config c = base_config();
	struct recorder *r;
	struct scan s;

	(void)state;
	c.rotate_size = 1000;
	c.max_bytes = 4000;
	r = start(&c);
	emit_n(r, 200);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_true(s.retention > 0);
	assert_true(s.bytes <= c.max_bytes + 2 * c.rotate_size);
	assert_true(s.user_events < 200);
	/* The oldest remaining file follows a file retention reported deleting. */
	assert_true(s.first_prev_file[0] != '\0');
	assert_non_null(json_object_get(s.deleted, s.first_prev_file));
	scan_free(&s);
}

static void test_drop_mode_counts(void **state)
{
	struct rec_config c = base_config();
	struct rec_stats st;
	struct recorder *r;
	struct scan s;
	int ok = 0, dropped = 0;

	(void)state;
	c.queue_size = 4;
	c.on_backpressure = REC_BP_DROP;
	r = start(&c);
	recorder_test_pause(r, true);
	for (int i = 0; i < 10; i++) {
		enum rec_enqueue e = recorder_emit(r, "ev", json_pack("{s:i}", "i", i));
		ok += e == REC_OK;
		dropped += e == REC_DROPPED;
	}
	assert_int_equal(ok, 4);
	assert_int_equal(dropped, 6);
	recorder_stats(r, &st);
	assert_int_equal(st.drops, 6);
	assert_int_equal(st.queue_depth, 4);
	recorder_test_pause(r, false);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_int_equal(s.user_events, 4);
	scan_free(&s);
}

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1;
}

static void test_block_mode_room_fd(void **state)
{
	struct rec_config c = base_config();
	struct recorder *r;
	json_t *kept;
	struct scan s;

	(void)state;
	c.queue_size = 4;
	r = start(&c);
	recorder_test_pause(r, true);
	emit_n(r, 4);
	assert_false(recorder_has_room(r));
	kept = json_pack("{s:i}", "i", 99);
	assert_int_equal(recorder_emit(r, "ev", kept), REC_FULL);
	assert_int_equal(kept->refcount, 1); /* still ours */
	assert_false(readable(recorder_room_fd(r), 0));
	recorder_test_pause(r, false);
	assert_true(readable(recorder_room_fd(r), 3000));
	recorder_room_ack(r);
	assert_true(recorder_has_room(r));
	assert_int_equal(recorder_emit(r, "ev", kept), REC_OK);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_int_equal(s.user_events, 5);
	scan_free(&s);
}

static void wait_depth(struct recorder *r, uint64_t depth, struct rec_stats *st)
{
	for (int i = 0; i < 300; i++) {
		recorder_stats(r, st);
		if (st->queue_depth == depth)
			return;
		usleep(10 * 1000);
	}
	fail_msg("queue depth stayed %llu", (unsigned long long)st->queue_depth);
}

static void test_write_failure_keeps_events(void **state)
{
	struct rec_config c = base_config();
	struct rec_stats st;
	struct recorder *r;
	struct scan s;

	(void)state;
	r = start(&c);
	emit_n(r, 3);
	wait_depth(r, 0, &st);
	recorder_test_fault(r, ENOSPC);
	emit_n(r, 5);
	usleep(300 * 1000);
	recorder_stats(r, &st);
	assert_int_equal(st.queue_depth, 5);
	assert_true(st.failing);
	assert_non_null(strstr(st.last_error, strerror(ENOSPC)));
	recorder_test_fault(r, 0);
	wait_depth(r, 0, &st);
	assert_false(st.failing);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_int_equal(s.user_events, 8);
	scan_free(&s);
}

static void test_directory_is_a_file(void **state)
{
	struct rec_config c = base_config();
	char path[512], err[256] = "";
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/pgvigil-not-a-dir", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	c.directory = path;
	assert_null(recorder_start(&c, err, sizeof(err)));
	assert_non_null(strstr(err, "not a directory"));
	unlink(path);
}

static void test_hmac_chain(void **state)
{
	struct rec_config c = base_config();
	char key[] = "correct horse battery staple";
	char line[4096], *body, hash[REC_HASH_HEX_LEN + 1], calc[REC_HASH_HEX_LEN + 1];
	struct dirent **names;
	struct recorder *r;
	struct scan s;
	size_t blen;
	FILE *f;
	int n;

	(void)state;
	c.hmac_key = key;
	r = start(&c);
	emit_n(r, 10);
	recorder_stop(r);
	check_dir(key, &s);
	assert_int_equal(s.user_events, 10);
	scan_free(&s);
	/* Without the key the first line does not verify. */
	n = scandir(tmpdir, &names, is_recording, alphasort);
	assert_int_equal(n, 1);
	snprintf(line, sizeof(line), "%s/%s", tmpdir, names[0]->d_name);
	free(names[0]);
	free(names);
	f = fopen(line, "r");
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	assert_true(rec_split_line(line, strlen(line) - 1, &body, &blen, hash));
	assert_true(rec_hash_hex(NULL, body, blen, calc));
	assert_string_not_equal(calc, hash);
	free(body);
}

/* A crash leaves a .partial with a torn last line: the next start repairs it. */
static void test_crash_repair(void **state)
{
	struct rec_config c = base_config();
	struct dirent **names;
	struct recorder *r;
	char from[512], to[600];
	struct scan s;
	FILE *f;
	int n;

	(void)state;
	r = start(&c);
	emit_n(r, 4);
	recorder_stop(r);
	n = scandir(tmpdir, &names, is_recording, alphasort);
	assert_int_equal(n, 1);
	snprintf(from, sizeof(from), "%s/%s", tmpdir, names[0]->d_name);
	snprintf(to, sizeof(to), "%s.partial", from);
	free(names[0]);
	free(names);
	assert_int_equal(rename(from, to), 0);
	f = fopen(to, "a");
	fputs("{\"i\":7,\"prev\":\"00", f);
	fclose(f);
	r = start(&c);
	emit_n(r, 2);
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_false(s.partial);
	assert_int_equal(s.recovery, 1);
	assert_int_equal(s.user_events, 6);
	scan_free(&s);
}

/* The serializer writes exactly what json_dumps(JSON_COMPACT | JSON_SORT_KEYS) would. */
static void expect_same_bytes(json_t *fields, const char *type)
{
	static const char prev[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	struct rec_buf b = {0};
	json_t *ref = json_deep_copy(fields);
	char *want;

	assert_true(rec_serialize_event(&b, fields, type, 1234567, 42, prev));
	json_object_del(ref, "hash");
	json_object_set_new(ref, "v", json_integer(REC_FORMAT_VERSION));
	json_object_set_new(ref, "seq", json_integer(42));
	json_object_set_new(ref, "ts", json_string("1970-01-01T00:00:01.234567Z"));
	json_object_set_new(ref, "type", json_string(type));
	json_object_set_new(ref, "prev", json_string(prev));
	want = json_dumps(ref, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(want);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.p, want, b.len);
	free(want);
	free(b.p);
	json_decref(ref);
}

static void test_serializer_matches_jansson(void **state)
{
	json_t *many = json_object(), *f;
	char key[16];

	(void)state;
	f = json_pack("{s:s,s:I,s:I,s:b,s:b,s:n,s:f,s:[s,i,{s:s,s:s}],s:{s:s,s:{s:i,s:i}}}",
	              "text", "SELECT '\"q\\\\' /* a/b */\n\t\r\b\f\x01\x1f\x7f é €",
	              "big", (json_int_t)INT64_MIN, "pos", (json_int_t)INT64_MAX, "t", 1, "f", 0,
	              "nothing", "real", 1.5, "arr", "x", -3, "zk", "1", "ak", "2", "tags",
	              "traceparent", "00-ab", "nested", "b", 2, "a", 1);
	json_object_set_new(f, "nul", json_stringn("a\0b", 3));
	json_object_set_new(f, "seq", json_integer(999)); /* reserved: overwritten */
	json_object_set_new(f, "hash", json_string("x"));
	json_object_set_new(f, "session", json_string("0a0b0c0d-1"));
	json_object_set_new(f, "\"odd key\n", json_true());
	expect_same_bytes(f, "statement");
	expect_same_bytes(f, "type \"with\" quotes and a very long name beyond the slot");
	json_decref(f);
	for (int i = 0; i < 40; i++) { /* more keys than the on-stack sort handles */
		snprintf(key, sizeof(key), "k%02d", (i * 17) % 40);
		json_object_set_new(many, key, json_integer(i));
	}
	expect_same_bytes(many, "ev");
	json_decref(many);
	many = json_object();
	expect_same_bytes(many, "ev");
	json_decref(many);
	/* the sort compares 8-byte key prefixes: keys equal in 8 bytes, shorter, empty, high bytes */
	many = json_object();
	{
		static const char *const keys[] = {"statement_name", "statements", "statemen",
		                                   "statement", "statemenz", "statemen\x7f", "",
		                                   "a", "abcdefgh", "abcdefgi", "abcdefg",
		                                   "abcdefgh\xc3\xa9", "\xc3\xa9", "zzzzzzzzz", "s",
		                                   "sequence", "types", "pre"};
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			json_object_set_new(many, keys[i], json_integer((json_int_t)i));
	}
	expect_same_bytes(many, "ev");
	json_decref(many);
}

/* An event built with rec_event_* serializes as the same object built with jansson. */
static void test_built_event_matches_jansson(void **state)
{
	static const char prev[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	struct rec_event *e = rec_event_new();
	json_t *ref = json_object();
	struct rec_buf got = {0};
	char big[2000], *want;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_non_null(e);
	rec_event_str(e, "session", "0a0b0c0d-1");
	rec_event_int(e, "stmt", 1);
	rec_event_int(e, "stmt", -7); /* replaced */
	rec_event_str(e, "text", "SELECT '\"é\"'\n\x01");
	rec_event_str(e, "bad", "\xc3\x28");               /* invalid UTF-8: absent */
	assert_false(rec_event_strn(e, "bad2", "\xed\xa0\x80", 3)); /* a surrogate */
	rec_event_null(e, "rows");
	rec_event_str(e, "none", NULL);
	rec_event_bool(e, "denied", true);
	rec_event_bool(e, "skipped", false);
	rec_event_json(e, "params", json_pack("[s,i,{s:i,s:i}]", "a", 2, "z", 1, "b", 2));
	rec_event_str(e, "seq", "reserved: ignored");
	rec_event_str(e, "big", big); /* grows past the inline text */
	json_object_set_new(ref, "session", json_string("0a0b0c0d-1"));
	json_object_set_new(ref, "stmt", json_integer(-7));
	json_object_set_new(ref, "text", json_string("SELECT '\"é\"'\n\x01"));
	json_object_set_new(ref, "rows", json_null());
	json_object_set_new(ref, "none", json_null());
	json_object_set_new(ref, "denied", json_true());
	json_object_set_new(ref, "skipped", json_false());
	json_object_set_new(ref, "params", json_pack("[s,i,{s:i,s:i}]", "a", 2, "z", 1, "b", 2));
	json_object_set_new(ref, "big", json_string(big));
	assert_false(e->failed);
	assert_true(rec_serialize_built(&got, e, "statement", 1234567, 42, prev));
	json_object_set_new(ref, "v", json_integer(REC_FORMAT_VERSION));
	json_object_set_new(ref, "seq", json_integer(42));
	json_object_set_new(ref, "ts", json_string("1970-01-01T00:00:01.234567Z"));
	json_object_set_new(ref, "type", json_string("statement"));
	json_object_set_new(ref, "prev", json_string(prev));
	want = json_dumps(ref, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(want);
	assert_int_equal(got.len, strlen(want));
	assert_memory_equal(got.p, want, got.len);
	free(want);
	free(got.p);
	json_decref(ref);
	rec_event_free(e);
}

/*
 * A part nested with rec_event_nest (a statement's folded result) serializes as
 * jansson writes the same object inside the event: keys sorted, skipped keys absent.
 */
static void test_nested_part_matches_jansson(void **state)
{
	static const char prev[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	static const char *const skip[] = {"session", "stmt", NULL};
	struct rec_event *st = rec_event_new(), *res = rec_event_new();
	json_t *ref = json_object(), *inner = json_object();
	struct rec_buf got = {0};
	char *want;

	(void)state;
	assert_non_null(st);
	assert_non_null(res);
	rec_event_str(st, "session", "0a0b0c0d-2");
	rec_event_int(st, "stmt", 3);
	rec_event_str(st, "text", "SELECT 1");
	rec_event_set_ts(st, 1234567);
	rec_event_str(res, "session", "0a0b0c0d-2"); /* skipped: the statement says it */
	rec_event_int(res, "stmt", 3);
	rec_event_str(res, "sqlstate", "00000");
	rec_event_int(res, "duration_us", 250);
	rec_event_str(res, "command_tag", "SELECT 1");
	rec_event_null(res, "rows");
	rec_event_json(res, "data", json_pack("[[s,n]]", "é", NULL));
	rec_event_nest(st, "result", res, skip);
	assert_true(rec_event_ok(st));
	json_object_set_new(inner, "sqlstate", json_string("00000"));
	json_object_set_new(inner, "duration_us", json_integer(250));
	json_object_set_new(inner, "command_tag", json_string("SELECT 1"));
	json_object_set_new(inner, "rows", json_null());
	json_object_set_new(inner, "data", json_pack("[[s,n]]", "é", NULL));
	json_object_set_new(ref, "session", json_string("0a0b0c0d-2"));
	json_object_set_new(ref, "stmt", json_integer(3));
	json_object_set_new(ref, "text", json_string("SELECT 1"));
	json_object_set_new(ref, "result", inner);
	json_object_set_new(ref, "v", json_integer(REC_FORMAT_VERSION));
	json_object_set_new(ref, "seq", json_integer(9));
	json_object_set_new(ref, "ts", json_string("1970-01-01T00:00:01.234567Z"));
	json_object_set_new(ref, "type", json_string("statement"));
	json_object_set_new(ref, "prev", json_string(prev));
	assert_true(rec_serialize_built(&got, st, "statement", 1234567, 9, prev));
	want = json_dumps(ref, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(want);
	assert_int_equal(got.len, strlen(want));
	assert_memory_equal(got.p, want, got.len);
	/* a failed part fails the event it is nested in */
	res->failed = true;
	rec_event_nest(st, "again", res, skip);
	assert_false(rec_event_ok(st));
	free(want);
	free(got.p);
	json_decref(ref);
	rec_event_free(st);
	rec_event_free(res);
}

/* Built events go through the recorder and verify like any other. */
static void test_built_events_recorded(void **state)
{
	struct rec_config c = {.directory = tmpdir, .queue_size = 8,
	                       .on_backpressure = REC_BP_BLOCK, .fsync = REC_FSYNC_NEVER};
	struct recorder *r;
	struct scan s;

	(void)state;
	r = start(&c);
	for (int i = 0; i < 100; i++) {
		struct rec_event *e = rec_event_new();

		assert_non_null(e);
		rec_event_int(e, "i", i);
		rec_event_str(e, "text", "SELECT 1");
		while (recorder_emit_event(r, "ev", e) == REC_FULL)
			usleep(1000);
	}
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_int_equal(s.user_events, 100);
	scan_free(&s);
}

/* --- the lock-free ring (include/recorder_ring.h) ------------------------------------ */

static struct rec_slot ring_slot(usec_t n)
{
	struct rec_slot s = {NULL, NULL, n, "ev"};
	return s;
}

/* Push one event; asserts it went in and returns the wake hint. */
static bool ring_push_ok(struct rec_ring *q, usec_t n)
{
	struct rec_slot s = ring_slot(n);
	bool wake = true;

	assert_true(rec_ring_push(q, &s, &wake));
	return wake;
}

static void test_ring_full_empty_wrap(void **state)
{
	struct rec_slot slots[4];
	struct rec_ring q;
	struct rec_slot s = ring_slot(99);
	size_t head;
	bool wake;

	(void)state;
	rec_ring_init(&q, slots, 4, 2);
	assert_int_equal(rec_ring_peek(&q, &head), 0);
	/* many laps around 4 slots: order kept, full at exactly cap, empty after */
	for (usec_t lap = 0, next = 0, got = 0; lap < 10; lap++) {
		for (int i = 0; i < 4; i++) {
			assert_true(rec_ring_has_room(&q));
			(void)ring_push_ok(&q, (usec_t)next++);
		}
		assert_false(rec_ring_has_room(&q));
		assert_false(rec_ring_push(&q, &s, &wake));
		assert_int_equal(rec_ring_depth(&q), 4);
		/* pop unevenly (3 then 1) so that head and tail are out of phase */
		assert_int_equal(rec_ring_peek(&q, &head), 4);
		for (size_t i = 0; i < 3; i++)
			assert_int_equal(slots[(head + i) % 4].ts, got++);
		(void)rec_ring_pop(&q, 3);
		assert_int_equal(rec_ring_peek(&q, &head), 1);
		assert_int_equal(slots[head % 4].ts, got++);
		(void)rec_ring_pop(&q, 1);
		assert_int_equal(rec_ring_depth(&q), 0);
	}
	/* partial fill across the wrap point */
	(void)ring_push_ok(&q, 1000);
	(void)ring_push_ok(&q, 1001);
	(void)rec_ring_pop(&q, 1);
	(void)ring_push_ok(&q, 1002);
	(void)ring_push_ok(&q, 1003);
	(void)ring_push_ok(&q, 1004);
	assert_false(rec_ring_has_room(&q));
	assert_int_equal(rec_ring_peek(&q, &head), 4);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(slots[(head + i) % 4].ts, 1001 + (usec_t)i);
}

static void test_ring_want_room(void **state)
{
	struct rec_slot slots[2];
	struct rec_ring q;
	struct rec_slot s = ring_slot(7);
	bool wake;

	(void)state;
	rec_ring_init(&q, slots, 2, 1);
	(void)ring_push_ok(&q, 1);
	assert_false(rec_ring_pop(&q, 1)); /* nobody was refused: no room signal */
	(void)ring_push_ok(&q, 2);
	(void)ring_push_ok(&q, 3);
	assert_false(rec_ring_push(&q, &s, &wake)); /* refused: remembers to signal */
	assert_false(rec_ring_pop(&q, 0));          /* nothing freed: no signal yet */
	assert_true(rec_ring_pop(&q, 1));           /* room: signal once... */
	(void)ring_push_ok(&q, 4);
	assert_false(rec_ring_pop(&q, 1)); /* ...not again */
}

static void test_ring_wake_flag(void **state)
{
	struct rec_slot slots[8];
	struct rec_ring q;

	(void)state;
	rec_ring_init(&q, slots, 8, 3);
	assert_false(ring_push_ok(&q, 1)); /* consumer awake: no signal */
	(void)rec_ring_pop(&q, 1);

	/* asleep on an empty queue: the first event wakes it, once */
	assert_true(rec_ring_may_sleep(&q, REC_SLEEP_EMPTY));
	assert_true(ring_push_ok(&q, 2));
	assert_true(rec_ring_claim_wake(&q));
	assert_false(ring_push_ok(&q, 3));
	assert_false(rec_ring_claim_wake(&q));

	/* an event already queued: the consumer must not sleep for it */
	assert_false(rec_ring_may_sleep(&q, REC_SLEEP_EMPTY));
	assert_false(ring_push_ok(&q, 4)); /* flag cleared again */

	/* lingering with 3 queued (wake_at 3): no sleep; after popping, wake at the 3rd */
	assert_false(rec_ring_may_sleep(&q, REC_SLEEP_LINGER));
	(void)rec_ring_pop(&q, 2);
	assert_true(rec_ring_may_sleep(&q, REC_SLEEP_LINGER)); /* 1 queued */
	assert_false(ring_push_ok(&q, 5));                     /* 2: keep lingering */
	assert_true(ring_push_ok(&q, 6));                      /* 3: wake */
	assert_true(rec_ring_claim_wake(&q));

	/* paused: the producer never wakes it */
	(void)rec_ring_pop(&q, 3);
	assert_true(rec_ring_may_sleep(&q, REC_SLEEP_PAUSED));
	for (usec_t i = 0; i < 8; i++)
		assert_false(ring_push_ok(&q, 10 + i));
	assert_false(rec_ring_claim_wake(&q));
	rec_ring_awake(&q);
}

/*
 * Two threads: the consumer sleeps (as the recorder does) whenever the ring is
 * empty, with a long timeout; a lost wake-up shows as a timeout. Order and
 * count are checked, the producer spinning when full.
 */
#define RING_STRESS_N 200000
struct ring_stress {
	struct rec_ring q;
	struct rec_slot slots[64];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int timeouts;
	usec_t got;
	bool bad_order;
};

static void *ring_consumer(void *arg)
{
	struct ring_stress *t = arg;

	while (t->got < RING_STRESS_N) {
		size_t head, n = rec_ring_peek(&t->q, &head);

		for (size_t i = 0; i < n; i++)
			t->bad_order |= t->slots[(head + i) % 64].ts != t->got++;
		(void)rec_ring_pop(&t->q, n);
		if (n)
			continue;
		pthread_mutex_lock(&t->lock);
		if (rec_ring_may_sleep(&t->q, REC_SLEEP_EMPTY)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 5;
			if (pthread_cond_timedwait(&t->cond, &t->lock, &ts) == ETIMEDOUT)
				t->timeouts++;
			rec_ring_awake(&t->q);
		}
		pthread_mutex_unlock(&t->lock);
	}
	return NULL;
}

static void test_ring_two_threads(void **state)
{
	static struct ring_stress t;
	pthread_t th;

	(void)state;
	memset(&t, 0, sizeof(t));
	rec_ring_init(&t.q, t.slots, 64, 1);
	pthread_mutex_init(&t.lock, NULL);
	pthread_cond_init(&t.cond, NULL);
	assert_int_equal(pthread_create(&th, NULL, ring_consumer, &t), 0);
	for (usec_t i = 0; i < RING_STRESS_N; i++) {
		struct rec_slot s = ring_slot(i);
		bool wake = false;

		while (!rec_ring_push(&t.q, &s, &wake))
			sched_yield();
		if (wake) {
			pthread_mutex_lock(&t.lock);
			if (rec_ring_claim_wake(&t.q))
				pthread_cond_signal(&t.cond);
			pthread_mutex_unlock(&t.lock);
		}
		if (i % 1024 == 0)
			usleep(50); /* let the consumer catch up and sleep now and then */
	}
	pthread_join(th, NULL);
	assert_false(t.bad_order);
	assert_int_equal(t.got, RING_STRESS_N);
	assert_int_equal(t.timeouts, 0);
	assert_int_equal(rec_ring_depth(&t.q), 0);
	pthread_cond_destroy(&t.cond);
	pthread_mutex_destroy(&t.lock);
}

static void test_pool_put_take(void **state)
{
	void *cells[3];
	struct rec_pool p;
	int items[8];

	(void)state;
	rec_pool_init(&p, cells, 3);
	assert_null(rec_pool_take(&p));
	/* wraps around the 3 cells several times; FIFO; full refuses */
	for (int lap = 0; lap < 4; lap++) {
		for (int i = 0; i < 3; i++)
			assert_true(rec_pool_put(&p, &items[i]));
		assert_false(rec_pool_put(&p, &items[7]));
		assert_ptr_equal(rec_pool_take(&p), &items[0]);
		assert_true(rec_pool_put(&p, &items[3]));
		for (int i = 1; i < 4; i++)
			assert_ptr_equal(rec_pool_take(&p), &items[i]);
		assert_null(rec_pool_take(&p));
	}
	rec_pool_init(&p, NULL, 0); /* no cells: never holds anything */
	assert_false(rec_pool_put(&p, &items[0]));
	assert_null(rec_pool_take(&p));
}

/* Written events come back through recorder_event_new, emptied, and record correctly. */
static void test_recycled_events(void **state)
{
	struct rec_config c = base_config();
	struct recorder *r;
	struct rec_stats st;
	struct scan s;
	char big[1000];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r = start(&c);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 50; i++) {
			struct rec_event *e = recorder_event_new(r);

			assert_non_null(e);
			assert_true(rec_event_ok(e));
			/* the pool hands events back in order: shift which ones are big per round */
			rec_event_int(e, "n", round * 50 + i);
			if ((round * 50 + i) % 7 == 0)
				rec_event_str(e, "big", big); /* grows past the inline text */
			assert_int_equal(recorder_emit_event(r, "ev", e), REC_OK);
		}
		wait_depth(r, 0, &st);
	}
	recorder_stop(r);
	check_dir(NULL, &s);
	assert_int_equal(s.user_events, 150);
	assert_int_equal(s.recycled_bad, 0); /* no member of an earlier use left over */
	scan_free(&s);
}

/* Arrays built as text, and events merged from a kept part, give jansson's bytes. */
static void test_jarray_and_merge_match_jansson(void **state)
{
	static const char prev[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
	static const char nul[] = {'a', 0, 'b'};
	struct rec_jarray a = {0};
	struct rec_event *part = rec_event_new(), *e = rec_event_new();
	json_t *ref = json_array(), *obj;
	struct rec_buf got = {0};
	char *text, *want;
	size_t len;

	(void)state;
	text = rec_jarray_finish(&a, &len); /* empty */
	assert_non_null(text);
	assert_int_equal(len, 2);
	assert_memory_equal(text, "[]", 2);
	free(text);

	rec_jarray_null(&a);
	rec_jarray_int(&a, -9223372036854775807LL - 1);
	rec_jarray_int(&a, 42);
	rec_jarray_bool(&a, true);
	rec_jarray_bool(&a, false);
	assert_true(rec_jarray_strn(&a, "x\"\\\t\x1f é", strlen("x\"\\\t\x1f é")));
	assert_true(rec_jarray_strn(&a, nul, sizeof(nul))); /* NUL inside: \u0000 */
	assert_true(rec_jarray_strn(&a, "", 0));
	assert_false(rec_jarray_strn(&a, "\xc3\x28", 2)); /* not UTF-8: nothing added */
	json_array_append_new(ref, json_null());
	json_array_append_new(ref, json_integer(-9223372036854775807LL - 1));
	json_array_append_new(ref, json_integer(42));
	json_array_append_new(ref, json_true());
	json_array_append_new(ref, json_false());
	json_array_append_new(ref, json_string("x\"\\\t\x1f é"));
	json_array_append_new(ref, json_stringn(nul, sizeof(nul)));
	json_array_append_new(ref, json_string(""));
	text = rec_jarray_finish(&a, &len);
	want = json_dumps(ref, JSON_COMPACT);
	assert_non_null(text);
	assert_non_null(want);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(text, want, len);
	free(want);

	/* a kept part merged into an event, next to members set directly */
	assert_non_null(part);
	assert_non_null(e);
	rec_event_str(part, "text", "SELECT $1");
	rec_event_str(part, "class", "read");
	rec_event_int(e, "stmt", 3);
	rec_event_merge(e, part);
	rec_event_raw(e, "params", text, len);
	assert_true(rec_event_ok(e));
	assert_true(rec_serialize_built(&got, e, "statement", 1234567, 42, prev));
	obj = json_pack("{s:i,s:s,s:s,s:O,s:i,s:i,s:s,s:s,s:s}", "stmt", 3, "text", "SELECT $1",
	                "class", "read", "params", ref, "v", REC_FORMAT_VERSION, "seq", 42, "ts",
	                "1970-01-01T00:00:01.234567Z", "type", "statement", "prev", prev);
	want = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	assert_int_equal(got.len, strlen(want));
	assert_memory_equal(got.p, want, got.len);
	/* the part is unchanged and can be merged again */
	assert_int_equal(part->n, 2);
	free(want);
	free(got.p);
	free(text);
	json_decref(obj);
	json_decref(ref);
	rec_event_free(part);
	rec_event_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rotation_and_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_interval_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_by_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drop_mode_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_block_mode_room_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_failure_keeps_events, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_directory_is_a_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hmac_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_repair, setup, teardown),
	    cmocka_unit_test(test_serializer_matches_jansson),
	    cmocka_unit_test(test_built_event_matches_jansson),
	    cmocka_unit_test(test_nested_part_matches_jansson),
	    cmocka_unit_test_setup_teardown(test_built_events_recorded, setup, teardown),
	    cmocka_unit_test(test_ring_full_empty_wrap),
	    cmocka_unit_test(test_ring_want_room),
	    cmocka_unit_test(test_ring_wake_flag),
	    cmocka_unit_test(test_ring_two_threads),
	    cmocka_unit_test(test_pool_put_take),
	    cmocka_unit_test(test_jarray_and_merge_match_jansson),
	    cmocka_unit_test_setup_teardown(test_recycled_events, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
