/*
 * webhook.c - approval notifications: JSON body, HMAC signature, and the
 * worker thread that POSTs them with libcurl (see webhook.h).
 *
 * Threads: the loop builds a job (URL, CA file, timeout, body, signature
 * header: everything the worker needs, copied) and appends it to a fixed-size
 * ring under `mu`. The worker pops, sends, frees. The worker never logs (the
 * logger is not thread-safe): it counts failures and keeps the last error
 * text under `mu`, and the loop logs them from webhook_poll().
 */
#include "webhook.h"
#include "governance.h"
#include "jwks.h"
#include "log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WEBHOOK_CONNECT_TIMEOUT 5L
#define WEBHOOK_ERR_MAX         256

/* --- body and signature (pure) ------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * JSON strings must be UTF-8, and database/user names come from the startup
 * packet unchecked: invalid bytes become '?'. Stops at NUL, cut at max bytes
 * on a character boundary.
 */
static json_t *json_text(const char *s, size_t len, size_t max)
{
	char *out;
	size_t o = 0;
	json_t *j;

	if (!s)
		return json_null();
	if (len > max)
		len = max;
	if (!(out = malloc(len + 1)))
		return NULL;
	for (size_t i = 0; i < len && s[i];) {
		size_t n = utf8_seq((const unsigned char *)s + i, len - i);
		if (n == 0) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	j = json_stringn(out, o);
	free(out);
	return j;
}

static json_t *json_str(const char *s)
{
	return json_text(s, s ? strlen(s) : 0, 1024);
}

/* ISO-8601 UTC, second precision; null for 0. */
static json_t *json_time(int64_t t)
{
	char buf[32];
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return json_null();
	return json_string(buf);
}

static json_t *json_groups(char *const *groups, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_str(groups[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* json_object_set_new() takes a NULL value as failure and frees nothing else. */
static bool put(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0;
}

char *webhook_body(const struct webhook_event *ev)
{
	json_t *o = json_object();
	char fp[17];
	bool requested = ev->event && strcmp(ev->event, "approval_requested") == 0;
	char *out = NULL;
	bool ok;

	if (!o)
		return NULL;
	snprintf(fp, sizeof(fp), "%016llx", (unsigned long long)ev->fingerprint);
	ok = put(o, "event", json_str(ev->event)) &&
	     put(o, "id", json_integer((json_int_t)ev->id)) &&
	     put(o, "decision", json_str(ev->decision)) &&
	     put(o, "approver", json_str(ev->approver)) &&
	     put(o, "approver_provider", json_str(ev->approver_provider)) &&
	     put(o, "subject", json_str(ev->subject)) &&
	     put(o, "provider", json_str(ev->provider)) &&
	     put(o, "groups", json_groups(ev->groups, ev->n_groups)) &&
	     put(o, "database", json_str(ev->database)) &&
	     put(o, "db_user", json_str(ev->db_user)) &&
	     put(o, "application_name", json_str(ev->application_name)) &&
	     put(o, "statement", json_text(ev->statement, ev->statement_len, WEBHOOK_STMT_MAX)) &&
	     put(o, "fingerprint", ev->fingerprint ? json_string(fp) : json_null()) &&
	     put(o, "rule", json_str(ev->rule)) && put(o, "reason", json_str(ev->reason)) &&
	     put(o, requested ? "expires_at" : "decided_at",
	         json_time(requested ? ev->expires_at : ev->decided_at));
	if (ok)
		out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return out;
}

bool webhook_signature(const unsigned char *key, size_t keylen, const char *body, size_t len,
                       char out[WEBHOOK_SIG_LEN])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)body, len, mac, &maclen) ||
	    maclen != 32)
		return false;
	memcpy(out, "sha256=", 7);
	for (unsigned i = 0; i < maclen; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", mac[i]);
	return true;
}

const char *webhook_url_refused(const char *url, bool allow_insecure_loopback)
{
	const char *bad;

	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return "must not contain spaces or control characters";
	bad = jwks_url_refused(url, allow_insecure_loopback);
	/* jwks.c names its own flag; say ours */
	if (bad && strncmp(url, "http://", 7) == 0 && !allow_insecure_loopback)
		return "must be https:// (http:// only to loopback with allow_insecure_loopback)";
	return bad;
}

/* --- the queue (both threads, under mu) --------------------------------------------- */

struct job {
	char *url, *ca_file, *body;
	char sig[WEBHOOK_SIG_LEN]; /* "" when unsigned */
	bool insecure;
	long timeout;
	uint64_t id;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct job *ring[WEBHOOK_QUEUE_MAX];
static size_t head, count;
static atomic_bool stopping;
static uint64_t failed, failed_logged; /* under mu; failed_logged: loop */
static char last_err[WEBHOOK_ERR_MAX]; /* under mu */

/* loop thread only */
static bool worker_running, start_failed, shut_down;
static pthread_t worker;
static uint64_t dropped;

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->url);
	free(j->ca_file);
	free(j->body);
	free(j);
}

/* --- HTTP (worker thread) ------------------------------------------------------------ */

static size_t discard(char *data, size_t size, size_t nmemb, void *arg)
{
	(void)data;
	(void)arg;
	return size * nmemb;
}

/* Lets webhook_stop() interrupt a transfer instead of waiting out the timeout. */
static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)arg, (void)a, (void)b, (void)c, (void)d;
	return atomic_load(&stopping) ? 1 : 0;
}

static void set_options(CURL *h, const struct job *j, struct curl_slist *hdrs, char *cerr)
{
	curl_easy_setopt(h, CURLOPT_URL, j->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, j->insecure ? "https,http" : "https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS,
	                 CURLPROTO_HTTPS | (j->insecure ? CURLPROTO_HTTP : 0));
#endif
	/* No redirects: a redirect could leave the vetted https/loopback URL. */
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* a thread must not take SIGALRM */
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
	                 j->timeout < WEBHOOK_CONNECT_TIMEOUT ? j->timeout
	                                                      : WEBHOOK_CONNECT_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, j->timeout);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "pgvigil");
	if (j->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, j->ca_file);
}

static bool add_header(struct curl_slist **l, const char *h)
{
	struct curl_slist *n = curl_slist_append(*l, h);
	if (!n)
		return false;
	*l = n;
	return true;
}

/* POST j; false with the reason in err (no secret in it: the URL is config, not a secret). */
static bool deliver(const struct job *j, char *err, size_t errlen)
{
	char cerr[CURL_ERROR_SIZE] = "", sig[WEBHOOK_SIG_LEN + 32];
	struct curl_slist *hdrs = NULL;
	CURL *h = curl_easy_init();
	CURLcode rc;
	long status = 0;
	bool ok;

	snprintf(sig, sizeof(sig), "X-Pgvigil-Signature: %s", j->sig);
	if (!h || !add_header(&hdrs, "Content-Type: application/json") ||
	    !add_header(&hdrs, "Expect:") || (j->sig[0] && !add_header(&hdrs, sig))) {
		snprintf(err, errlen, "out of memory");
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(h);
		return false;
	}
	set_options(h, j, hdrs, cerr);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	ok = rc == CURLE_OK && status >= 200 && status < 300;
	if (rc != CURLE_OK)
		snprintf(err, errlen, "%.120s: %.120s", j->url,
		         cerr[0] ? cerr : curl_easy_strerror(rc));
	else if (!ok)
		snprintf(err, errlen, "%.120s: HTTP status %ld", j->url, status);
	return ok;
}

static void *worker_main(void *arg)
{
	char err[WEBHOOK_ERR_MAX];

	(void)arg;
	pthread_mutex_lock(&mu);
	while (!atomic_load(&stopping)) {
		struct job *j;
		if (count == 0) {
			pthread_cond_wait(&cv, &mu);
			continue;
		}
		j = ring[head];
		ring[head] = NULL;
		head = (head + 1) % WEBHOOK_QUEUE_MAX;
		count--;
		pthread_mutex_unlock(&mu);
		err[0] = '\0';
		bool ok = deliver(j, err, sizeof(err));
		pthread_mutex_lock(&mu);
		if (!ok && !atomic_load(&stopping)) {
			failed++;
			snprintf(last_err, sizeof(last_err), "approval id=%llu: %.200s",
			         (unsigned long long)j->id, err);
		}
		job_free(j);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* --- event loop side ----------------------------------------------------------------- */

/* Signals belong to the loop (libevent): the worker is created with all blocked. */
static bool start_worker(void)
{
	sigset_t all, old;
	int rc;

	if (worker_running)
		return true;
	if (start_failed)
		return false;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		start_failed = true;
		log_error("webhook: cannot initialise libcurl; notifications are off");
		return false;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&worker, NULL, worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		curl_global_cleanup();
		start_failed = true;
		log_error("webhook: cannot start the worker thread; notifications are off");
		return false;
	}
	worker_running = true;
	return true;
}

static struct job *job_new(const struct gov_webhook *cfg, const struct webhook_event *ev)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->id = ev->id;
	j->insecure = cfg->allow_insecure_loopback;
	j->timeout = (long)(cfg->timeout > 0 ? cfg->timeout : WEBHOOK_DEFAULT_TIMEOUT);
	j->url = strdup(cfg->url);
	j->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	j->body = webhook_body(ev);
	if (!j->url || (cfg->ca_file && !j->ca_file) || !j->body ||
	    (cfg->secret &&
	     !webhook_signature(cfg->secret, cfg->secret_len, j->body, strlen(j->body), j->sig))) {
		job_free(j);
		return NULL;
	}
	return j;
}

static void drop(const struct webhook_event *ev, const char *why)
{
	dropped++;
	log_warning(
	    "webhook: %s notification for approval id=%llu dropped: %s (%llu dropped so far)",
	    ev->event, (unsigned long long)ev->id, why, (unsigned long long)dropped);
}

void webhook_notify(const struct gov_webhook *cfg, const struct webhook_event *ev)
{
	struct job *j;
	bool queued = false;

	/* after webhook_stop(): clients freed at exit must not start a new worker */
	if (!cfg || !cfg->url || shut_down)
		return;
	if (!start_worker()) {
		drop(ev, "no worker");
		return;
	}
	if (!(j = job_new(cfg, ev))) {
		drop(ev, "out of memory");
		return;
	}
	pthread_mutex_lock(&mu);
	if (count < WEBHOOK_QUEUE_MAX) {
		ring[(head + count) % WEBHOOK_QUEUE_MAX] = j;
		count++;
		queued = true;
		pthread_cond_signal(&cv);
	}
	pthread_mutex_unlock(&mu);
	if (!queued) {
		job_free(j);
		drop(ev, "queue full");
	}
}

void webhook_poll(void)
{
	uint64_t n;
	char err[WEBHOOK_ERR_MAX];

	if (!worker_running)
		return;
	pthread_mutex_lock(&mu);
	n = failed;
	memcpy(err, last_err, sizeof(err));
	pthread_mutex_unlock(&mu);
	if (n == failed_logged)
		return;
	log_warning("webhook: %llu notification(s) not delivered, last: %s",
	            (unsigned long long)(n - failed_logged), err);
	failed_logged = n;
}

void webhook_stop(void)
{
	size_t left;

	shut_down = true;
	if (!worker_running)
		return;
	pthread_mutex_lock(&mu);
	atomic_store(&stopping, true);
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(worker, NULL);
	worker_running = false;
	left = count;
	while (count) {
		job_free(ring[head]);
		ring[head] = NULL;
		head = (head + 1) % WEBHOOK_QUEUE_MAX;
		count--;
	}
	if (left)
		log_info("webhook: %zu notification(s) not sent at shutdown", left);
	curl_global_cleanup();
}

uint64_t webhook_dropped(void)
{
	return dropped;
}
