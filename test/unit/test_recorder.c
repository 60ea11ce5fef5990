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
	assert_int_equal(json_integer_value(json_object_get(ev, "v")), 1);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
