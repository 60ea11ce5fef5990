/*
 * jwks.c - remote JWKS (jwks_uri / OpenID discovery): one worker thread owns
 * libcurl, the event loop only adopts finished key sets. See jwks.h for the
 * ownership rules; in short, a key set crosses threads exactly once, as a
 * pointer handed over under `mu`, and is only ever freed by the loop once it
 * has been adopted.
 *
 * The worker never logs (the logger is not thread-safe): it leaves its error
 * text next to the result and the loop logs it when it drains the pipe.
 */
#include "jwks.h"
#include "log.h"
#include "oidc.h"
#include "oidc_cache.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define JWKS_MAX_BYTES       (1024 * 1024)
#define JWKS_CONNECT_TIMEOUT 5L
#define JWKS_TOTAL_TIMEOUT   10L
#define JWKS_RETRY_SECS      30 /* after a failed fetch, unless refresh_interval is shorter */

struct jwks_source {
	struct jwks_source *next; /* all sources, under mu */
	/* settings: immutable after creation, read by both threads without the lock */
	char *jwks_uri, *issuer, *ca_file, *label;
	bool discovery, allow_insecure_loopback;
	int64_t refresh_interval, grace_period, kid_refresh_min;

	/* under mu */
	int refs;    /* the policies' references (loop) */
	bool busy;   /* the worker is fetching it (and holds it alive) */
	bool kick;   /* a refresh was asked while busy */
	bool tried;  /* at least one fetch finished (startup wait) */
	int64_t due; /* monotonic seconds of the next fetch */
	bool has_result, result_ok;
	struct oidc_keyset *pending; /* worker-built, never seen by the loop yet */
	int64_t pending_at;          /* wall clock of that fetch */
	char result_err[512];

	/* loop thread only */
	struct oidc_keyset *current; /* the last good key set */
	int64_t last_good;           /* wall clock of its (re)confirmation */
	int64_t last_kid_request;
	bool failing;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv, done_cv; /* CLOCK_MONOTONIC, set up in jwks_start */
static struct jwks_source *sources;
static bool worker_running;
static atomic_bool stopping;
static pthread_t worker;
static int notify_fd[2] = {-1, -1};
static struct event *notify_ev;

static int64_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

/* --- URL policy ---------------------------------------------------------------- */

static bool loopback_host(const char *host, size_t len)
{
	static const char *const names[] = {"127.0.0.1", "localhost", "[::1]"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncasecmp(host, names[i], len) == 0)
			return true;
	return false;
}

const char *jwks_url_refused(const char *url, bool allow_insecure_loopback)
{
	const char *auth, *end, *port;

	if (strncasecmp(url, "https://", 8) == 0)
		return url[8] ? NULL : "has no host";
	if (strncasecmp(url, "http://", 7) != 0)
		return "must be an https:// URL";
	if (!allow_insecure_loopback)
		return "must be https:// (http:// only to loopback with "
		       "allow_insecure_loopback_jwks)";
	auth = url + 7;
	end = auth + strcspn(auth, "/?#");
	/* userinfo would let "http://127.0.0.1@evil.example/" pass a naive host check */
	if (memchr(auth, '@', (size_t)(end - auth)))
		return "must not contain user information";
	port = auth[0] == '[' ? memchr(auth, ']', (size_t)(end - auth)) : NULL;
	port = port ? port + 1 : memchr(auth, ':', (size_t)(end - auth));
	if (!port || port > end)
		port = end;
	if (!loopback_host(auth, (size_t)(port - auth)))
		return "uses http:// to a host that is not 127.0.0.1, localhost or [::1]";
	return NULL;
}

/* --- HTTP (worker thread) ------------------------------------------------------------ */

struct body {
	char *p;
	size_t n, cap;
	bool too_large;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body *b = arg;
	size_t len = size * nmemb;

	if (len > JWKS_MAX_BYTES - b->n) {
		b->too_large = true;
		return 0; /* aborts the transfer */
	}
	if (b->n + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		char *p;
		while (cap < b->n + len + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, len);
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

/* Lets jwks_stop() interrupt a transfer instead of waiting out the timeout. */
static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	return atomic_load(&stopping) ? 1 : 0;
}

static void set_options(CURL *h, const struct jwks_source *s, const char *url, struct body *b,
                        char *cerr)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR,
	                 s->allow_insecure_loopback ? "https,http" : "https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS,
	                 CURLPROTO_HTTPS | (s->allow_insecure_loopback ? CURLPROTO_HTTP : 0));
#endif
	/* No redirects: a redirect could leave the vetted https/loopback URL. */
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* a thread must not take SIGALRM */
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, JWKS_CONNECT_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, JWKS_TOTAL_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)JWKS_MAX_BYTES);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "pgvigil");
	if (s->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
}

/* GET url into *out (NUL-terminated, at most JWKS_MAX_BYTES). */
static bool http_get(const struct jwks_source *s, const char *url, struct body *out, char *err,
                     size_t errlen)
{
	char cerr[CURL_ERROR_SIZE] = "";
	CURL *h = curl_easy_init();
	CURLcode rc;
	long status = 0;

	if (!h) {
		snprintf(err, errlen, "%.200s: cannot create an HTTP handle", url);
		return false;
	}
	set_options(h, s, url, out, cerr);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	if (out->too_large || rc == CURLE_FILESIZE_EXCEEDED)
		snprintf(err, errlen, "%.200s: response larger than %d bytes", url, JWKS_MAX_BYTES);
	else if (rc != CURLE_OK)
		snprintf(err, errlen, "%.200s: %s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
	else if (status != 200)
		snprintf(err, errlen, "%.200s: HTTP status %ld", url, status);
	else if (!out->p)
		snprintf(err, errlen, "%.200s: empty response", url);
	else
		return true;
	return false;
}

/* The discovery document's jwks_uri; its issuer must be ours (OpenID Discovery 4.3). */
static char *discover(const struct jwks_source *s, char *err, size_t errlen)
{
	struct body b = {0};
	char url[1024], *uri = NULL;
	size_t ilen = strlen(s->issuer);
	json_t *doc;
	const char *iss, *ju, *why;

	/* "<issuer>/.well-known/...", without doubling a trailing slash */
	snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration",
	         (int)(ilen && s->issuer[ilen - 1] == '/' ? ilen - 1 : ilen), s->issuer);
	if (!http_get(s, url, &b, err, errlen)) {
		free(b.p);
		return NULL;
	}
	doc = json_loadb(b.p, b.n, JSON_REJECT_DUPLICATES, NULL);
	free(b.p);
	iss = json_string_value(json_object_get(doc, "issuer"));
	ju = json_string_value(json_object_get(doc, "jwks_uri"));
	if (!iss || !ju)
		snprintf(err, errlen, "%.200s: not a discovery document with issuer and jwks_uri",
		         url);
	else if (strcmp(iss, s->issuer) != 0)
		snprintf(err, errlen, "%.200s: issuer \"%.200s\" is not the configured one", url,
		         iss);
	else if ((why = jwks_url_refused(ju, s->allow_insecure_loopback)))
		snprintf(err, errlen, "%.200s: jwks_uri %s", url, why);
	else if (!(uri = strdup(ju)))
		snprintf(err, errlen, "out of memory");
	json_decref(doc);
	return uri;
}

/* One fetch: a fresh key set nobody else references, or NULL with err. */
static struct oidc_keyset *fetch_keys(const struct jwks_source *s, char *err, size_t errlen)
{
	char *uri = s->discovery ? discover(s, err, errlen) : strdup(s->jwks_uri);
	struct body b = {0};
	struct oidc_keyset *ks = NULL;
	char why[256];

	if (!uri) {
		if (!s->discovery)
			snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (http_get(s, uri, &b, err, errlen)) {
		ks = oidc_keyset_parse(b.p, b.n, why, sizeof(why));
		if (!ks)
			snprintf(err, errlen, "%.200s: %s", uri, why);
	}
	free(b.p);
	free(uri);
	return ks;
}

/* --- the worker ------------------------------------------------------------------ */

static void source_destroy(struct jwks_source *s)
{
	oidc_keyset_free(s->pending);
	free(s->jwks_uri);
	free(s->issuer);
	free(s->ca_file);
	free(s->label);
	free(s);
}

static void unlink_source(struct jwks_source *s)
{
	for (struct jwks_source **pp = &sources; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			return;
		}
}

/* Under mu: the next live source due at now, else the earliest due time in *next. */
static struct jwks_source *next_due(int64_t now, int64_t *next)
{
	*next = now + 3600;
	for (struct jwks_source *s = sources; s; s = s->next) {
		if (s->refs == 0 || s->busy)
			continue;
		if (s->due <= now)
			return s;
		if (s->due < *next)
			*next = s->due;
	}
	return NULL;
}

static void wait_until(pthread_cond_t *cv, int64_t mono_deadline)
{
	struct timespec ts = {.tv_sec = (time_t)mono_deadline};
	pthread_cond_timedwait(cv, &mu, &ts);
}

static void notify_loop(void)
{
	char c = 1;
	/* Nonblocking: a full pipe already holds a wake-up, which is all we need. */
	ssize_t r = write(notify_fd[1], &c, 1);
	(void)r;
}

/* Under mu: the fetch of s finished; hand the result to the loop. */
static void finish_fetch(struct jwks_source *s, struct oidc_keyset *ks, const char *err)
{
	int64_t now = mono_now();
	int64_t retry =
	    s->refresh_interval < JWKS_RETRY_SECS ? s->refresh_interval : JWKS_RETRY_SECS;

	s->busy = false;
	s->tried = true;
	s->due = s->kick ? now : now + (ks ? s->refresh_interval : retry);
	s->kick = false;
	oidc_keyset_free(s->pending); /* an older result the loop never took */
	s->pending = ks;
	s->pending_at = (int64_t)time(NULL);
	s->result_ok = ks != NULL;
	snprintf(s->result_err, sizeof(s->result_err), "%s", ks ? "" : err);
	s->has_result = true;
	if (s->refs == 0) { /* the loop let go while we fetched */
		unlink_source(s);
		source_destroy(s);
	}
	pthread_cond_broadcast(&done_cv);
	notify_loop();
}

static void *worker_main(void *arg)
{
	pthread_mutex_lock(&mu);
	while (!atomic_load(&stopping)) {
		int64_t next;
		struct jwks_source *s = next_due(mono_now(), &next);
		struct oidc_keyset *ks;
		char err[512] = "";

		if (!s) {
			wait_until(&work_cv, next);
			continue;
		}
		s->busy = true;
		pthread_mutex_unlock(&mu);
		ks = fetch_keys(s, err, sizeof(err));
		pthread_mutex_lock(&mu);
		finish_fetch(s, ks, err);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* --- the loop side ----------------------------------------------------------------- */

/* Loop thread: adopt one source's result (ownership of the key set moves here). */
static void adopt(struct jwks_source *s)
{
	struct oidc_keyset *ks, *old = NULL;
	bool ok;
	int64_t at;
	char err[512];

	pthread_mutex_lock(&mu);
	if (!s->has_result || s->refs == 0) {
		pthread_mutex_unlock(&mu);
		return;
	}
	ks = s->pending;
	s->pending = NULL;
	ok = s->result_ok;
	at = s->pending_at;
	snprintf(err, sizeof(err), "%s", s->result_err);
	s->has_result = false;
	pthread_mutex_unlock(&mu);

	if (ok) {
		if (!s->current || s->failing)
			log_info("jwks %s: %zu keys fetched", s->label, oidc_keyset_count(ks));
		old = s->current;
		s->current = ks;
		s->last_good = at;
		s->failing = false;
	} else {
		log_warning("jwks %s: fetch failed, %s: %s", s->label,
		            s->current ? "keeping the last good keys" : "no keys yet", err);
		s->failing = true;
	}
	oidc_keyset_free(old); /* on the loop thread, where it was read */
}

static void adopt_all(void)
{
	struct jwks_source *batch[64];
	size_t n = 0;

	/* Collected under the lock, adopted outside it (adopt logs). A source the
	 * loop holds a reference to cannot disappear meanwhile. */
	do {
		n = 0;
		pthread_mutex_lock(&mu);
		for (struct jwks_source *s = sources; s && n < 64; s = s->next)
			if (s->has_result && s->refs > 0)
				batch[n++] = s;
		pthread_mutex_unlock(&mu);
		for (size_t i = 0; i < n; i++)
			adopt(batch[i]);
	} while (n == 64);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	adopt_all();
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_params(const struct jwks_source *s, const struct jwks_params *p)
{
	return s->refs > 0 && s->discovery == p->discovery &&
	       same_str(s->jwks_uri, p->discovery ? NULL : p->jwks_uri) &&
	       same_str(s->issuer, p->issuer) && same_str(s->ca_file, p->ca_file) &&
	       s->allow_insecure_loopback == p->allow_insecure_loopback &&
	       s->refresh_interval == p->refresh_interval && s->grace_period == p->grace_period &&
	       s->kid_refresh_min == p->kid_refresh_min;
}

static char *dup_opt(const char *s, bool *ok)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*ok = false;
	return d;
}

static struct jwks_source *source_new(const struct jwks_params *p)
{
	struct jwks_source *s = calloc(1, sizeof(*s));
	bool ok = true;

	if (!s)
		return NULL;
	s->jwks_uri = dup_opt(p->discovery ? NULL : p->jwks_uri, &ok);
	s->issuer = dup_opt(p->issuer, &ok);
	s->ca_file = dup_opt(p->ca_file, &ok);
	if (ok && asprintf(&s->label, "%s", p->discovery ? p->issuer : p->jwks_uri) < 0) {
		s->label = NULL;
		ok = false;
	}
	if (!ok) {
		source_destroy(s);
		return NULL;
	}
	s->discovery = p->discovery;
	s->allow_insecure_loopback = p->allow_insecure_loopback;
	s->refresh_interval = p->refresh_interval;
	s->grace_period = p->grace_period;
	s->kid_refresh_min = p->kid_refresh_min;
	s->last_kid_request = INT64_MIN / 2;
	return s;
}

struct jwks_source *jwks_source_get(const struct jwks_params *p)
{
	struct jwks_source *s;

	/* Sources are taken only while a policy is (re)loaded (loop thread): the new
	 * policy may change issuer, audience or claims while keeping this source, so no
	 * token verified under the old one may skip verification any more. */
	oidc_cache_flush();
	pthread_mutex_lock(&mu);
	for (s = sources; s && !same_params(s, p); s = s->next)
		;
	if (s) {
		s->refs++;
		pthread_mutex_unlock(&mu);
		return s;
	}
	pthread_mutex_unlock(&mu);
	if (!(s = source_new(p)))
		return NULL;
	pthread_mutex_lock(&mu);
	s->refs = 1;
	s->due = 0; /* fetch at once */
	s->next = sources;
	sources = s;
	if (worker_running)
		pthread_cond_signal(&work_cv);
	pthread_mutex_unlock(&mu);
	return s;
}

void jwks_source_put(struct jwks_source *src)
{
	bool destroy = false;

	if (!src)
		return;
	pthread_mutex_lock(&mu);
	if (--src->refs == 0) {
		/* The loop is done with it: its key set goes here, on the loop thread. */
		oidc_keyset_free(src->current);
		src->current = NULL;
		if (!src->busy) {
			unlink_source(src);
			destroy = true;
		}
	}
	pthread_mutex_unlock(&mu);
	if (destroy)
		source_destroy(src);
}

const struct oidc_keyset *jwks_source_keys(struct jwks_source *src, int64_t now, const char **why)
{
	*why = NULL;
	if (!src->current) {
		*why = "the key set has not been fetched yet";
		return NULL;
	}
	if (now > src->last_good + src->grace_period) {
		*why = "the last good key set is older than grace_period (fetches failing)";
		return NULL;
	}
	return src->current;
}

void jwks_source_want_refresh(struct jwks_source *src, int64_t now)
{
	/* Rate limited: unknown kids are attacker-controlled and must not drive traffic. */
	if (now - src->last_kid_request < src->kid_refresh_min)
		return;
	src->last_kid_request = now;
	pthread_mutex_lock(&mu);
	if (src->busy)
		src->kick = true;
	else
		src->due = 0;
	pthread_cond_signal(&work_cv);
	pthread_mutex_unlock(&mu);
}

/* --- start / stop ------------------------------------------------------------------- */

static bool init_conds(void)
{
	pthread_condattr_t a;
	bool ok = pthread_condattr_init(&a) == 0 &&
	          pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0 &&
	          pthread_cond_init(&work_cv, &a) == 0 && pthread_cond_init(&done_cv, &a) == 0;
	pthread_condattr_destroy(&a);
	return ok;
}

static bool open_pipe(struct event_base *base)
{
	if (pipe2(notify_fd, O_NONBLOCK | O_CLOEXEC) != 0)
		return false;
	notify_ev = event_new(base, notify_fd[0], EV_READ | EV_PERSIST, on_notify, NULL);
	return notify_ev && event_add(notify_ev, NULL) == 0;
}

/* Startup only (the loop is not running yet): wait for every source's first try. */
static void wait_first_fetches(void)
{
	int64_t deadline = mono_now() + JWKS_STARTUP_WAIT_SECS;
	bool pending = true;

	pthread_mutex_lock(&mu);
	while (pending && mono_now() < deadline) {
		pending = false;
		for (struct jwks_source *s = sources; s; s = s->next)
			pending |= s->refs > 0 && !s->tried;
		if (pending)
			wait_until(&done_cv, deadline);
	}
	pthread_mutex_unlock(&mu);
	if (pending)
		log_warning("jwks: first fetch not done after %d s; token logins fail with "
		            "\"unknown signing key\" until it is",
		            JWKS_STARTUP_WAIT_SECS);
	adopt_all();
}

/* Signals belong to the loop (libevent): the worker is created with all blocked. */
static bool spawn_worker(void)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&worker, NULL, worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc == 0;
}

bool jwks_start(struct event_base *base)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !init_conds() || !open_pipe(base))
		return false;
	if (!spawn_worker())
		return false;
	pthread_mutex_lock(&mu);
	worker_running = true;
	pthread_mutex_unlock(&mu);
	wait_first_fetches();
	return true;
}

void jwks_stop(void)
{
	if (!worker_running)
		return;
	pthread_mutex_lock(&mu);
	atomic_store(&stopping, true);
	pthread_cond_signal(&work_cv);
	pthread_mutex_unlock(&mu);
	pthread_join(worker, NULL);
	worker_running = false;
	event_free(notify_ev);
	notify_ev = NULL;
	close(notify_fd[0]);
	close(notify_fd[1]);
	curl_global_cleanup();
}
