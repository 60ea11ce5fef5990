/*
 * recorder_policy.c - the `recording:` section of the governance file
 * (doc/recordings.md, governance spec §4) into struct rec_policy
 * (record_events.h). The HMAC key file is read here, at load time, so the
 * recorder never reads configuration from the disk.
 *
 *   recording:
 *     directory: recordings       # relative to the governance file
 *     rotate_size: 64MB           # bytes, kB/MB/GB/TB suffixes; 0 = never
 *     rotate_interval: 1h         # s/m/min/h/d; 0 = never
 *     max_age: 30d                # retention (also retention: {max_age, max_bytes})
 *     max_bytes: 20GB
 *     fsync: interval             # always | interval | never
 *     on_backpressure: block      # block | drop
 *     queue_size: 4096
 *     hmac_key_file: rec.key
 *     statements: true
 *     results: summary            # none | summary | rows
 *     max_result_rows: 100        # alias rows_per_result
 *     max_value_bytes: 1024
 */
#include "gov_parse.h"
#include "record_events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REC_KEY_MAX       4096
#define REC_QUEUE_MAX     (1 << 22)
#define REC_ROWS_MAX      100000
#define REC_VALUE_MAX     (1 << 20)
#define REC_SIZE_LIMIT    (INT64_C(1) << 50)
#define REC_DURATION_MAX  (INT64_C(100) * 365 * 86400)

#define RP(o) ((struct rec_policy *)(o))

/* "64MB", "512kB", "1024": bytes (binary multiples, as PostgreSQL's GUC units). */
static bool get_size(struct gparser *ps, yaml_node_t *n, const char *what, uint64_t *out)
{
	static const struct {
		const char *unit;
		int shift;
	} units[] = {{"", 0}, {"B", 0}, {"kB", 10}, {"KB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}};
	const char *s = scalar(n);
	char *end;
	unsigned long long v;

	if (!s || !s[0] || s[0] == '-' || s[0] == '+')
		return fail(ps, n, "%s must be a size such as 64MB", what);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return fail(ps, n, "%s must be a size such as 64MB", what);
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > (unsigned long long)(REC_SIZE_LIMIT >> units[i].shift))
			return fail(ps, n, "%s is too large", what);
		*out = (uint64_t)v << units[i].shift;
		return true;
	}
	return fail(ps, n, "%s: unknown unit \"%s\" (B, kB, MB, GB, TB)", what, end);
}

/* "30d", "1h", "90": a duration into microseconds (seconds without a unit). */
static bool get_duration(struct gparser *ps, yaml_node_t *n, const char *what, usec_t *out)
{
	static const struct {
		const char *unit;
		int64_t secs;
	} units[] = {{"", 1},     {"s", 1},      {"m", 60},      {"min", 60},
	             {"h", 3600}, {"d", 86400}, {"w", 7 * 86400}};
	const char *s = scalar(n);
	char *end;
	long long v;

	if (!s || !s[0] || s[0] == '-' || s[0] == '+')
		return fail(ps, n, "%s must be a duration such as 1h or 30d", what);
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s)
		return fail(ps, n, "%s must be a duration such as 1h or 30d", what);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (v > REC_DURATION_MAX / units[i].secs)
			return fail(ps, n, "%s is too large", what);
		*out = (usec_t)(v * units[i].secs) * USEC_PER_SEC;
		return true;
	}
	return fail(ps, n, "%s: unknown unit \"%s\" (s, m, h, d, w)", what, end);
}

static bool k_directory(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_path(ps, v, "directory", &RP(o)->cfg.directory);
}

static bool k_rotate_size(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_size(ps, v, "rotate_size", &RP(o)->cfg.rotate_size);
}

static bool k_rotate_interval(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_duration(ps, v, "rotate_interval", &RP(o)->cfg.rotate_interval);
}

static bool k_max_age(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_duration(ps, v, "max_age", &RP(o)->cfg.max_age);
}

static bool k_max_bytes(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_size(ps, v, "max_bytes", &RP(o)->cfg.max_bytes);
}

static const struct gov_key retention_keys[] = {{"max_age", k_max_age},
                                                {"max_bytes", k_max_bytes}};

/* The spec's form: retention: {max_age: 30d, max_bytes: 20GB}. */
static bool k_retention(struct gparser *ps, yaml_node_t *v, void *o)
{
	return parse_mapping(ps, v, "retention", retention_keys, 2, o);
}

static bool k_fsync(struct gparser *ps, yaml_node_t *v, void *o)
{
	const char *s = scalar(v);
	if (s && strcmp(s, "always") == 0)
		RP(o)->cfg.fsync = REC_FSYNC_ALWAYS;
	else if (s && strcmp(s, "interval") == 0)
		RP(o)->cfg.fsync = REC_FSYNC_INTERVAL;
	else if (s && strcmp(s, "never") == 0)
		RP(o)->cfg.fsync = REC_FSYNC_NEVER;
	else
		return fail(ps, v, "fsync must be always, interval or never");
	return true;
}

static bool k_backpressure(struct gparser *ps, yaml_node_t *v, void *o)
{
	const char *s = scalar(v);
	if (s && strcmp(s, "block") == 0)
		RP(o)->cfg.on_backpressure = REC_BP_BLOCK;
	else if (s && strcmp(s, "drop") == 0)
		RP(o)->cfg.on_backpressure = REC_BP_DROP;
	else
		return fail(ps, v, "on_backpressure must be block or drop");
	return true;
}

static bool k_queue_size(struct gparser *ps, yaml_node_t *v, void *o)
{
	int64_t n;
	if (!get_number(ps, v, "queue_size", REC_QUEUE_MAX, false, &n))
		return false;
	if (n < 1)
		return fail(ps, v, "queue_size must be at least 1");
	RP(o)->cfg.queue_size = (size_t)n;
	return true;
}

/* The key is the file's first line (a trailing newline is not part of it), as pgvigil-audit. */
static bool read_key(struct gparser *ps, yaml_node_t *v, const char *path, char **out)
{
	char buf[REC_KEY_MAX + 2];
	FILE *f = fopen(path, "r");
	size_t len;

	if (!f)
		return fail(ps, v, "hmac_key_file %s: %s", path, strerror(errno));
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	len = strlen(buf);
	if (len == 0 || len > REC_KEY_MAX) {
		explicit_bzero(buf, sizeof(buf));
		return fail(ps, v, "hmac_key_file %s: the key must be 1..%d bytes on the first line",
		            path, REC_KEY_MAX);
	}
	*out = strdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return *out ? true : fail(ps, v, "out of memory");
}

static bool k_hmac_key_file(struct gparser *ps, yaml_node_t *v, void *o)
{
	char *path = NULL;
	bool ok;
	if (RP(o)->cfg.hmac_key)
		return fail(ps, v, "hmac_key_file given twice");
	if (!get_path(ps, v, "hmac_key_file", &path))
		return false;
	ok = read_key(ps, v, path, &RP(o)->cfg.hmac_key);
	free(path);
	return ok;
}

static bool k_statements(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_bool(ps, v, "statements", &RP(o)->statements);
}

static bool k_results(struct gparser *ps, yaml_node_t *v, void *o)
{
	const char *s = scalar(v);
	if (s && strcmp(s, "none") == 0)
		RP(o)->results = REC_RESULTS_NONE;
	else if (s && strcmp(s, "summary") == 0)
		RP(o)->results = REC_RESULTS_SUMMARY;
	else if (s && strcmp(s, "rows") == 0)
		RP(o)->results = REC_RESULTS_ROWS;
	else
		return fail(ps, v, "results must be none, summary or rows");
	return true;
}

static bool k_max_rows(struct gparser *ps, yaml_node_t *v, void *o)
{
	return get_number(ps, v, "max_result_rows", REC_ROWS_MAX, false, &RP(o)->max_result_rows);
}

static bool k_max_value(struct gparser *ps, yaml_node_t *v, void *o)
{
	if (!get_number(ps, v, "max_value_bytes", REC_VALUE_MAX, false, &RP(o)->max_value_bytes))
		return false;
	return RP(o)->max_value_bytes >= 16 ? true : fail(ps, v, "max_value_bytes must be >= 16");
}

static const struct gov_key recording_keys[] = {
    {"directory", k_directory},
    {"rotate_size", k_rotate_size},
    {"rotate_interval", k_rotate_interval},
    {"max_age", k_max_age},
    {"max_bytes", k_max_bytes},
    {"retention", k_retention},
    {"fsync", k_fsync},
    {"on_backpressure", k_backpressure},
    {"queue_size", k_queue_size},
    {"hmac_key_file", k_hmac_key_file},
    {"statements", k_statements},
    {"results", k_results},
    {"max_result_rows", k_max_rows},
    {"rows_per_result", k_max_rows}, /* the spec's name */
    {"max_value_bytes", k_max_value},
};

bool rec_parse_recording(struct gparser *ps, yaml_node_t *n)
{
	struct rec_policy *rp = calloc(1, sizeof(*rp));

	if (!rp)
		return fail(ps, n, "out of memory");
	rp->cfg.fsync = REC_FSYNC_INTERVAL;
	rp->cfg.on_backpressure = REC_BP_BLOCK; /* fail closed */
	rp->statements = true;
	rp->results = REC_RESULTS_SUMMARY;
	rp->max_result_rows = 100;
	rp->max_value_bytes = 1024;
	ps->pol->recording = rp; /* freed with the policy on any error */
	if (!parse_mapping(ps, n, "recording", recording_keys,
	                   sizeof(recording_keys) / sizeof(recording_keys[0]), rp))
		return false;
	return rp->cfg.directory ? true : fail(ps, n, "recording needs a directory");
}

void rec_policy_free(struct rec_policy *rp)
{
	if (!rp)
		return;
	free(rp->cfg.directory);
	if (rp->cfg.hmac_key) {
		explicit_bzero(rp->cfg.hmac_key, strlen(rp->cfg.hmac_key));
		free(rp->cfg.hmac_key);
	}
	free(rp);
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Everything in struct rec_config is fixed at recorder_start. */
bool rec_policy_needs_restart(const struct rec_policy *a, const struct rec_policy *b)
{
	const struct rec_config *x = &a->cfg, *y = &b->cfg;
	return !str_eq(x->directory, y->directory) || !str_eq(x->hmac_key, y->hmac_key) ||
	       x->rotate_size != y->rotate_size || x->rotate_interval != y->rotate_interval ||
	       x->max_age != y->max_age || x->max_bytes != y->max_bytes || x->fsync != y->fsync ||
	       x->on_backpressure != y->on_backpressure || x->queue_size != y->queue_size;
}
