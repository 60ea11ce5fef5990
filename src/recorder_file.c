/*
 * recorder_file.c - the recorder's files: the hash chain, batches of lines,
 * file naming, the .partial -> .jsonl life cycle, rotation by size and
 * interval, retention by age and total bytes, fsync policy and the repair of a
 * file left half-written by a crash. Runs on the recorder thread only. The JSON
 * text of an event (serializer, events built on the loop) is rec_json.c; the
 * format is specified in doc/recordings.md.
 */
#include "recorder_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define REC_PREFIX          "pgvigil-"
#define REC_SUFFIX          ".jsonl"
#define REC_PARTIAL         ".partial"
#define REC_RETENTION_EVERY (60 * USEC_PER_SEC)
#define REC_HASH_SUFFIX_LEN (sizeof(",\"hash\":\"\"}") - 1 + REC_HASH_HEX_LEN)
#define REC_BATCH_BYTES     (256 * 1024) /* one write() per this much, at most */

static const char zero_hash[REC_HASH_HEX_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* --- hashing ---------------------------------------------------------------------------- */

bool rec_hash_hex(const char *key, const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (key) {
		if (!HMAC(EVP_sha256(), key, (int)strlen(key), data, len, md, &mdlen))
			return false;
	} else if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL)) {
		return false;
	}
	if (mdlen != REC_HASH_HEX_LEN / 2)
		return false;
	hex_encode(md, mdlen, out);
	return true;
}

static bool is_hex_hash(const char *s)
{
	for (int i = 0; i < REC_HASH_HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool rec_split_line(const char *line, size_t len, char **body, size_t *bodylen, char *hash)
{
	const char *suf;

	if (len < REC_HASH_SUFFIX_LEN + 2)
		return false;
	suf = line + len - REC_HASH_SUFFIX_LEN;
	if (memcmp(suf, ",\"hash\":\"", 9) != 0 || memcmp(line + len - 2, "\"}", 2) != 0)
		return false;
	if (!is_hex_hash(suf + 9))
		return false;
	memcpy(hash, suf + 9, REC_HASH_HEX_LEN);
	hash[REC_HASH_HEX_LEN] = '\0';
	*bodylen = (size_t)(suf - line) + 1;
	*body = malloc(*bodylen + 1);
	if (!*body)
		return false;
	memcpy(*body, line, *bodylen - 1);
	(*body)[*bodylen - 1] = '}';
	(*body)[*bodylen] = '\0';
	return true;
}

/* --- small helpers ---------------------------------------------------------------------- */

void recw_error(struct rec_writer *w, const char *what, int err)
{
	pthread_mutex_lock(w->stats_lock);
	snprintf(w->stats->last_error, sizeof(w->stats->last_error), "%s: %s", what, strerror(err));
	w->stats->failing = true;
	pthread_mutex_unlock(w->stats_lock);
}

static void stats_written(struct rec_writer *w, size_t bytes, size_t events)
{
	pthread_mutex_lock(w->stats_lock);
	w->stats->bytes += bytes;
	w->stats->events += events;
	w->stats->failing = false;
	strlcpy_pv(w->stats->file, w->fd >= 0 ? w->name : "", sizeof(w->stats->file));
	pthread_mutex_unlock(w->stats_lock);
}

static void path_of(const struct rec_writer *w, const char *name, bool partial, char *out,
                    size_t outlen)
{
	snprintf(out, outlen, "%s/%s%s", w->cfg->directory, name, partial ? REC_PARTIAL : "");
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errno;
		if (k == 0)
			return EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int sync_dir(const struct rec_writer *w)
{
	int fd, rc = 0;

	if (w->cfg->fsync == REC_FSYNC_NEVER)
		return 0;
	fd = open(w->cfg->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fsync(fd) < 0)
		rc = errno;
	close(fd);
	return rc;
}

/* Queue a writer-made event (retention, recovery) to go out before the next event. */
static void add_note(struct rec_writer *w, const char *type, json_t *fields)
{
	if (!fields)
		return;
	if (json_object_set_new(fields, "type", json_string(type)) < 0 ||
	    json_object_set_new(fields, "ts_us", json_integer(now_usec())) < 0 ||
	    json_array_append_new(w->notes, fields) < 0)
		json_decref(fields);
}

/* SHA-256 on the writer's reused context, or HMAC (rec_hash_hex) with a key. */
static bool hash_body(struct rec_writer *w, const char *body, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (w->cfg->hmac_key || !w->md || !w->mdctx)
		return rec_hash_hex(w->cfg->hmac_key, body, len, out);
	if (!EVP_DigestInit_ex(w->mdctx, w->md, NULL) || !EVP_DigestUpdate(w->mdctx, body, len) ||
	    !EVP_DigestFinal_ex(w->mdctx, md, &mdlen) || mdlen != REC_HASH_HEX_LEN / 2)
		return false;
	hex_encode(md, mdlen, out);
	return true;
}

/*
 * Append the next event's line to the batch: the body chained to prev (the
 * hash covers the body, doc/recordings.md "Hash"), then its closing brace
 * replaced by ,"hash":"..."} and a newline. prev becomes this event's hash.
 * On failure the batch is as before.
 */
static int batch_event(struct rec_writer *w, json_t *fields, const struct rec_event *ev,
                       const char *type, usec_t ts, uint64_t seq, char *prev)
{
	struct rec_buf *b = &w->batch;
	size_t start = b->len;
	char hash[REC_HASH_HEX_LEN + 1];

	if (!(ev ? rec_serialize_built(b, ev, type, ts, seq, prev)
	         : rec_serialize_event(b, fields, type, ts, seq, prev))) {
		b->len = start;
		b->oom = false;
		return ENOMEM;
	}
	if (!hash_body(w, b->p + start, b->len - start, hash)) {
		b->len = start;
		return EIO;
	}
	b->len--; /* the body's closing brace */
	rec_buf_put(b, ",\"hash\":\"", 9);
	rec_buf_put(b, hash, REC_HASH_HEX_LEN);
	rec_buf_put(b, "\"}\n", 3);
	if (b->oom) {
		b->len = start;
		b->oom = false;
		return ENOMEM;
	}
	memcpy(prev, hash, REC_HASH_HEX_LEN + 1);
	return 0;
}

/*
 * Write the batch (`events` lines ending with the hash last) and advance the
 * chain. On error the file is cut back to its previous size so it stays a
 * valid chain and a retry writes identical bytes.
 */
static int flush_batch(struct rec_writer *w, size_t events, const char *last)
{
	size_t len = w->batch.len;
	int err;

	w->batch.len = 0;
	err = w->fault && atomic_load(w->fault) ? atomic_load(w->fault)
	                                        : write_all(w->fd, w->batch.p, len);
	if (err) {
		if (ftruncate(w->fd, (off_t)w->size) < 0)
			recw_error(w, "truncate after failed write", errno);
		return err;
	}
	w->size += len;
	w->lines += events;
	w->dirty = true;
	w->next_seq += events;
	memcpy(w->prev, last, sizeof(w->prev));
	stats_written(w, len, events);
	if (w->cfg->fsync == REC_FSYNC_ALWAYS && fdatasync(w->fd) == 0)
		w->dirty = false;
	return 0;
}

/* One writer-made event (header, notes), written at once. */
static int append_event(struct rec_writer *w, json_t *ev, const char *type, usec_t ts)
{
	char prev[REC_HASH_HEX_LEN + 1];
	int err;

	memcpy(prev, w->prev, sizeof(prev));
	w->batch.len = 0;
	if ((err = batch_event(w, ev, NULL, type, ts, w->next_seq, prev)) != 0)
		return err;
	return flush_batch(w, 1, prev);
}

/* --- file life cycle -------------------------------------------------------------------- */

static int write_header(struct rec_writer *w)
{
	json_t *h = json_pack(
	    "{s:s,s:s,s:s,s:o,s:s,s:s}", "type", "file_header", "format", "pgvigil-recording",
	    "file", w->name, "prev_file", w->prev_file[0] ? json_string(w->prev_file) : json_null(),
	    "chain_head", w->prev, "hash_alg", w->cfg->hmac_key ? "hmac-sha256" : "sha256");
	int err;

	if (!h)
		return ENOMEM;
	err = append_event(w, h, "file_header", now_usec());
	json_decref(h);
	return err;
}

static int open_file(struct rec_writer *w)
{
	char stamp[32], path[PATH_MAX];
	time_t now = time(NULL);
	struct tm tm;
	int err;

	if (w->fault && atomic_load(w->fault))
		return atomic_load(w->fault);
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(w->name, sizeof(w->name), REC_PREFIX "%s-%020" PRIu64 REC_SUFFIX, stamp,
	         w->next_seq);
	path_of(w, w->name, true, path, sizeof(path));
	w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
	if (w->fd < 0)
		return errno;
	w->size = w->lines = 0;
	w->opened = mono_usec();
	err = write_header(w);
	if (err) {
		close(w->fd);
		w->fd = -1;
		unlink(path);
	}
	return err;
}

static int flush_notes(struct rec_writer *w)
{
	while (json_array_size(w->notes) > 0) {
		json_t *n = json_array_get(w->notes, 0);
		usec_t ts = json_integer_value(json_object_get(n, "ts_us"));
		const char *type = json_string_value(json_object_get(n, "type"));
		int err;

		/* ts_us is bookkeeping, not part of the event (and not a reserved key) */
		json_object_del(n, "ts_us");
		err = append_event(w, n, type ? type : "note", ts);
		json_object_set_new(n, "ts_us", json_integer(ts));
		if (err)
			return err;
		json_array_remove(w->notes, 0);
	}
	return 0;
}

static int ensure_open(struct rec_writer *w)
{
	int err;

	if (w->fd < 0 && (err = open_file(w)) != 0)
		return err;
	return flush_notes(w);
}

struct rec_file {
	char name[REC_NAME_MAX];
	uint64_t seq;
	bool partial;
	off_t size;
	time_t mtime;
};

static int cmp_file(const void *a, const void *b)
{
	const struct rec_file *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parse pgvigil-<stamp>-<seq>.jsonl[.partial]; false for foreign names. */
static bool parse_name(const char *d, struct rec_file *f)
{
	size_t len = strlen(d), sl = strlen(REC_SUFFIX);
	const char *dash;
	char *end;

	if (strncmp(d, REC_PREFIX, strlen(REC_PREFIX)) != 0 || len >= REC_NAME_MAX)
		return false;
	f->partial =
	    len > strlen(REC_PARTIAL) && strcmp(d + len - strlen(REC_PARTIAL), REC_PARTIAL) == 0;
	if (f->partial)
		len -= strlen(REC_PARTIAL);
	if (len <= sl || strncmp(d + len - sl, REC_SUFFIX, sl) != 0)
		return false;
	memcpy(f->name, d, len - sl);
	f->name[len - sl] = '\0';
	dash = strrchr(f->name, '-');
	if (!dash || dash[1] == '\0')
		return false;
	errno = 0;
	f->seq = strtoull(dash + 1, &end, 10);
	if (*end || errno)
		return false;
	memcpy(f->name + len - sl, REC_SUFFIX, sl + 1);
	return true;
}

/* The recording files in the directory, sorted by first seq. -1 on error. */
static int list_files(const struct rec_writer *w, struct rec_file **out, size_t *n)
{
	DIR *dir = opendir(w->cfg->directory);
	struct dirent *de;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!dir)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		struct rec_file f;
		struct stat st;
		char path[PATH_MAX];

		if (!parse_name(de->d_name, &f))
			continue;
		snprintf(path, sizeof(path), "%s/%s", w->cfg->directory, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		f.size = st.st_size;
		f.mtime = st.st_mtime;
		if (*n == cap) {
			struct rec_file *g = realloc(*out, (cap ? cap * 2 : 16) * sizeof(*g));
			if (!g) {
				closedir(dir);
				return -1;
			}
			*out = g;
			cap = cap ? cap * 2 : 16;
		}
		(*out)[(*n)++] = f;
	}
	closedir(dir);
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), cmp_file);
	return 0;
}

/* Close the active file: sync per policy, rename .partial to .jsonl. */
static int close_file(struct rec_writer *w)
{
	char from[PATH_MAX], to[PATH_MAX];
	int err = 0;

	if (w->fd < 0)
		return 0;
	if (w->cfg->fsync != REC_FSYNC_NEVER && fdatasync(w->fd) < 0)
		err = errno;
	close(w->fd);
	w->fd = -1;
	path_of(w, w->name, true, from, sizeof(from));
	path_of(w, w->name, false, to, sizeof(to));
	if (rename(from, to) < 0) {
		err = errno;
	} else {
		int e = sync_dir(w);
		err = e ? e : err;
	}
	strlcpy_pv(w->prev_file, w->name, sizeof(w->prev_file));
	pthread_mutex_lock(w->stats_lock);
	w->stats->file[0] = '\0';
	pthread_mutex_unlock(w->stats_lock);
	return err;
}

/* --- retention -------------------------------------------------------------------------- */

static bool expired(const struct rec_writer *w, const struct rec_file *f, uint64_t total)
{
	if (w->cfg->max_bytes && total > w->cfg->max_bytes)
		return true;
	return w->cfg->max_age && (usec_t)(time(NULL) - f->mtime) * USEC_PER_SEC > w->cfg->max_age;
}

/*
 * Delete the oldest closed files while over max_bytes or older than max_age,
 * and note the deletions as a "retention" event so verify can tell retention
 * from a removed file. The active file is never deleted.
 */
static void run_retention(struct rec_writer *w)
{
	struct rec_file *files;
	json_t *deleted;
	uint64_t total = w->fd >= 0 ? w->size : 0;
	size_t n;

	w->last_retention = mono_usec();
	if ((!w->cfg->max_bytes && !w->cfg->max_age) || list_files(w, &files, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		total += files[i].partial ? 0 : (uint64_t)files[i].size;
	deleted = json_array();
	for (size_t i = 0; deleted && i < n; i++) {
		char path[PATH_MAX];

		if (files[i].partial || !expired(w, &files[i], total))
			break;
		path_of(w, files[i].name, false, path, sizeof(path));
		if (unlink(path) < 0) {
			recw_error(w, "retention unlink", errno);
			break;
		}
		total -= (uint64_t)files[i].size;
		json_array_append_new(deleted, json_pack("{s:s,s:I}", "file", files[i].name,
		                                         "bytes", (json_int_t)files[i].size));
	}
	if (deleted && json_array_size(deleted) > 0)
		add_note(w, "retention",
		         json_pack("{s:o,s:I}", "deleted", deleted, "remaining_bytes",
		                   (json_int_t)total));
	else
		json_decref(deleted);
	free(files);
}

/* --- crash repair and chain recovery ----------------------------------------------------- */

/*
 * Scan a file for its last complete, well-formed event. good = byte offset
 * after it. Returns true when one was found (seq and hash filled).
 */
static bool last_event(const char *path, off_t *good, uint64_t *seq, char *hash)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *body, h[REC_HASH_HEX_LEN + 1];
	size_t cap = 0, blen;
	ssize_t len;
	off_t off = 0;
	bool found = false;

	*good = 0;
	if (!f)
		return false;
	while ((len = getline(&line, &cap, f)) > 0) {
		json_t *ev;

		off += len;
		if (line[len - 1] != '\n' ||
		    !rec_split_line(line, (size_t)len - 1, &body, &blen, h))
			break;
		ev = json_loadb(body, blen, 0, NULL);
		free(body);
		if (!json_is_integer(json_object_get(ev, "seq"))) {
			json_decref(ev);
			break;
		}
		*seq = (uint64_t)json_integer_value(json_object_get(ev, "seq"));
		memcpy(hash, h, sizeof(h));
		*good = off;
		found = true;
		json_decref(ev);
	}
	free(line);
	fclose(f);
	return found;
}

/* A .partial left by a crash: cut the torn tail, note it, and give it its final name. */
static void repair_partial(struct rec_writer *w, const struct rec_file *f)
{
	char from[PATH_MAX], to[PATH_MAX], hash[REC_HASH_HEX_LEN + 1];
	uint64_t seq = 0;
	off_t good;

	path_of(w, f->name, true, from, sizeof(from));
	path_of(w, f->name, false, to, sizeof(to));
	if (!last_event(from, &good, &seq, hash)) {
		unlink(from); /* crashed before its header reached the disk */
		return;
	}
	if (good < f->size) {
		if (truncate(from, good) < 0)
			return;
		add_note(w, "recovery",
		         json_pack("{s:s,s:I}", "file", f->name, "truncated_bytes",
		                   (json_int_t)(f->size - good)));
	}
	if (rename(from, to) < 0)
		recw_error(w, "rename", errno);
}

/* Continue the chain of the newest file, after repairing crashed .partial files. */
static void recover_chain(struct rec_writer *w)
{
	struct rec_file *files;
	size_t n;

	if (list_files(w, &files, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (files[i].partial)
			repair_partial(w, &files[i]);
	for (size_t i = n; i-- > 0;) {
		char path[PATH_MAX];
		off_t good;
		uint64_t seq;

		path_of(w, files[i].name, false, path, sizeof(path));
		if (last_event(path, &good, &seq, w->prev)) {
			w->next_seq = seq + 1;
			strlcpy_pv(w->prev_file, files[i].name, sizeof(w->prev_file));
			break;
		}
	}
	free(files);
}

int recw_open_dir(struct rec_writer *w, char *err, size_t errlen)
{
	struct stat st;

	w->fd = -1;
	w->next_seq = 1;
	memcpy(w->prev, zero_hash, sizeof(w->prev));
	w->prev_file[0] = '\0';
	w->last_sync = w->last_retention = mono_usec();
	w->notes = json_array();
	w->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	w->mdctx = EVP_MD_CTX_new();
	if (!w->notes || !w->md || !w->mdctx) {
		snprintf(err, errlen, "out of memory (or no SHA-256 in libcrypto)");
		return -1;
	}
	if (mkdir(w->cfg->directory, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "recording directory %s: %s", w->cfg->directory,
		         strerror(errno));
		return -1;
	}
	if (stat(w->cfg->directory, &st) == 0 && !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "recording directory %s: not a directory", w->cfg->directory);
		return -1;
	}
	if (access(w->cfg->directory, W_OK | X_OK) < 0) {
		snprintf(err, errlen, "recording directory %s: %s", w->cfg->directory,
		         strerror(errno));
		return -1;
	}
	recover_chain(w);
	run_retention(w);
	return 0;
}

/* --- writer entry points ----------------------------------------------------------------- */

static bool rotation_due(const struct rec_writer *w, usec_t mono)
{
	if (w->fd < 0 || w->lines <= 1)
		return false;
	if (w->cfg->rotate_size && w->size >= w->cfg->rotate_size)
		return true;
	return w->cfg->rotate_interval && mono - w->opened >= w->cfg->rotate_interval;
}

static void rotate(struct rec_writer *w)
{
	int err = close_file(w);

	if (err)
		recw_error(w, "close", err);
	run_retention(w);
}

/* Size rotation would be due once `bytes` more (and `lines` more events) are in the file. */
static bool size_due_after(const struct rec_writer *w, size_t bytes, size_t lines)
{
	return w->cfg->rotate_size && w->lines + lines > 1 &&
	       w->size + bytes >= w->cfg->rotate_size;
}

/*
 * Serialize events from the ring into the batch until it is full, the events
 * run out, or size rotation becomes due (the file may exceed rotate_size by
 * one event, as before batching). *k = events in the batch; last = its hash.
 */
static int fill_batch(struct rec_writer *w, const struct rec_slot *ring, size_t cap, size_t first,
                      size_t n, size_t *k, char *last)
{
	memcpy(last, w->prev, REC_HASH_HEX_LEN + 1);
	w->batch.len = 0;
	for (*k = 0; *k < n; (*k)++) {
		const struct rec_slot *s = &ring[(first + *k) % cap];
		const char *type =
		    s->type[0] ? s->type : json_string_value(json_object_get(s->fields, "type"));
		int err;

		if (*k > 0 &&
		    (w->batch.len >= REC_BATCH_BYTES || size_due_after(w, w->batch.len, *k)))
			break;
		err = batch_event(w, s->fields, s->ev, type ? type : "", s->ts, w->next_seq + *k,
		                  last);
		if (err) {
			w->batch.len = 0;
			return err;
		}
	}
	return 0;
}

int recw_write_batch(struct rec_writer *w, const struct rec_slot *ring, size_t cap, size_t head,
                     size_t n, size_t *done)
{
	char last[REC_HASH_HEX_LEN + 1];
	int err;

	*done = 0;
	while (*done < n) {
		size_t k;

		if (rotation_due(w, mono_usec()))
			rotate(w);
		if ((err = ensure_open(w)) != 0)
			return err;
		if ((err = fill_batch(w, ring, cap, head + *done, n - *done, &k, last)) != 0)
			return err;
		if ((err = flush_batch(w, k, last)) != 0)
			return err;
		*done += k;
	}
	return 0;
}

int recw_tick(struct rec_writer *w, usec_t mono)
{
	if (w->fd >= 0 && w->dirty && w->cfg->fsync == REC_FSYNC_INTERVAL &&
	    mono - w->last_sync >= USEC_PER_SEC) {
		if (fdatasync(w->fd) == 0)
			w->dirty = false;
		w->last_sync = mono;
	}
	if (rotation_due(w, mono))
		rotate(w);
	if (mono - w->last_retention >= REC_RETENTION_EVERY)
		run_retention(w);
	if (json_array_size(w->notes) > 0)
		return ensure_open(w);
	return 0;
}

int recw_close(struct rec_writer *w)
{
	int err = 0;

	if (w->notes && json_array_size(w->notes) > 0)
		err = ensure_open(w);
	if (w->fd >= 0) {
		int e = close_file(w);
		err = err ? err : e;
	}
	return err;
}

void recw_free(struct rec_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	json_decref(w->notes);
	w->notes = NULL;
	EVP_MD_CTX_free(w->mdctx);
	w->mdctx = NULL;
	EVP_MD_free(w->md);
	w->md = NULL;
	free(w->batch.p);
	w->batch = (struct rec_buf){0};
}
