/*
 * scram.c - MD5 password hashing and SCRAM-SHA-256 (RFC 5802 / RFC 7677 as
 * PostgreSQL speaks it: no channel binding, user name taken from the startup
 * packet rather than from the SCRAM n= attribute).
 *
 * Both roles live here: the server that verifies a connecting client against a
 * stored secret, and the client that logs in to PostgreSQL either with a
 * password or - for pass-through - with the ClientKey/ServerKey pair recovered
 * from the client's own proof.
 *
 * Every message is a (pointer, length) pair that is NOT NUL-terminated; the
 * parsers below never look past `len`. Secrets are compared in constant time
 * and wiped with OPENSSL_cleanse before their memory is released.
 */
#include "scram.h"
#include "util.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define B64_LEN(n)   (4 * (((n) + 2) / 3))

/* --- small crypto wrappers -------------------------------------------------- */

static bool sha256(const void *data, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = 0;

	return EVP_Digest(data, n, out, &olen, EVP_sha256(), NULL) == 1 && olen == SCRAM_KEY_LEN;
}

static bool hmac256(const uint8_t *key, size_t keylen, const void *data, size_t n,
		    uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = 0;

	if (keylen > INT_MAX)
		return false;
	return HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &olen) && olen == SCRAM_KEY_LEN;
}

/* out = "md5" + hex(md5(data)), or "" if MD5 is unavailable (e.g. FIPS mode). */
/*
 * OpenSSL 3 looks an algorithm up in its provider tables on every use of
 * EVP_md5(); a login hashes several times, so fetch the implementation once.
 */
static const EVP_MD *md5_impl(void)
{
	static EVP_MD *md;
	if (!md)
		md = EVP_MD_fetch(NULL, "MD5", NULL);
	return md ? md : EVP_md5();
}

static void md5_hex(const void *data, size_t n, char out[36])
{
	uint8_t d[16];
	unsigned int olen = 0;

	if (EVP_Digest(data, n, d, &olen, md5_impl(), NULL) != 1 || olen != 16) {
		out[0] = '\0';
		return;
	}
	memcpy(out, "md5", 3);
	hex_encode(d, 16, out + 3);
}

/* --- MD5 ------------------------------------------------------------------ */

void md5_password_secret(const char *password, const char *user, char out[36])
{
	size_t pl = strlen(password), ul = strlen(user);
	char *buf = malloc(pl + ul + 1);

	out[0] = '\0';
	if (!buf)
		return;
	memcpy(buf, password, pl);
	memcpy(buf + pl, user, ul);
	md5_hex(buf, pl + ul, out);
	OPENSSL_cleanse(buf, pl + ul);
	free(buf);
}

void md5_salted_response(const char *md5secret, const uint8_t salt[4], char out[36])
{
	char buf[32 + 4];

	/* Copy the input before touching out: callers may pass the same buffer for both. */
	if (strncmp(md5secret, "md5", 3) != 0 || strlen(md5secret) != 35) {
		out[0] = '\0';
		return;
	}
	memcpy(buf, md5secret + 3, 32);
	memcpy(buf + 32, salt, 4);
	md5_hex(buf, sizeof(buf), out);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* --- base64 ----------------------------------------------------------------- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int pv_b64_encode(const uint8_t *src, size_t len, char *dst, size_t dstlen)
{
	size_t i, o = 0;

	if (len > (size_t)INT_MAX / 4 * 3 - 3 || dstlen < B64_LEN(len) + 1)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
		dst[o++] = b64_chars[v >> 18];
		dst[o++] = b64_chars[(v >> 12) & 63];
		dst[o++] = b64_chars[(v >> 6) & 63];
		dst[o++] = b64_chars[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < len ? (uint32_t)src[i + 1] << 8 : 0);
		dst[o++] = b64_chars[v >> 18];
		dst[o++] = b64_chars[(v >> 12) & 63];
		dst[o++] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
		dst[o++] = '=';
	}
	dst[o] = '\0';
	return (int)o;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict: length a multiple of 4, only alphabet characters, '=' only as the
 * last one or two characters, and the unused bits before the padding zero
 * (so every byte string has exactly one accepted encoding).
 */
int pv_b64_decode(const char *src, size_t len, uint8_t *dst, size_t dstlen)
{
	size_t pads = 0, outlen, i, o = 0;

	if (len % 4 != 0 || len > (size_t)INT_MAX)
		return -1;
	if (len == 0)
		return 0;
	if (src[len - 1] == '=')
		pads = src[len - 2] == '=' ? 2 : 1;
	outlen = len / 4 * 3 - pads;
	if (dstlen < outlen)
		return -1;
	for (i = 0; i < len; i += 4) {
		uint32_t v = 0;
		int k, nv = (i + 4 == len) ? 4 - (int)pads : 4;
		for (k = 0; k < 4; k++) {
			int c = k < nv ? b64_value(src[i + k]) : 0;
			if (c < 0)
				return -1;
			v = v << 6 | (uint32_t)c;
		}
		if (nv == 2 && (v & 0xFFFF) != 0)
			return -1;
		if (nv == 3 && (v & 0xFF) != 0)
			return -1;
		dst[o++] = (uint8_t)(v >> 16);
		if (nv > 2)
			dst[o++] = (uint8_t)(v >> 8);
		if (nv > 3)
			dst[o++] = (uint8_t)v;
	}
	return (int)o;
}

/* Decode exactly `want` bytes or fail. */
static bool b64_decode_exact(const char *src, size_t len, uint8_t *dst, size_t want)
{
	return pv_b64_decode(src, len, dst, want) == (int)want;
}

/* --- SCRAM secrets ---------------------------------------------------------- */

/* Parse a decimal int in [1, INT_MAX]; no sign, no blanks. */
static bool parse_iterations(const char *s, size_t len, int *out)
{
	long long v = 0;

	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

bool scram_parse_secret(const char *text, struct scram_secret *out)
{
	const char *p, *colon1, *dollar, *colon2, *end;
	struct scram_secret s;
	int n;

	if (!text || strncmp(text, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) != 0)
		return false;
	p = text + strlen(SCRAM_PREFIX);
	end = p + strlen(p);
	colon1 = strchr(p, ':');
	dollar = colon1 ? strchr(colon1, '$') : NULL;
	colon2 = dollar ? strchr(dollar, ':') : NULL;
	if (!colon2)
		return false;
	memset(&s, 0, sizeof(s));
	if (!parse_iterations(p, (size_t)(colon1 - p), &s.iterations))
		return false;
	n = pv_b64_decode(colon1 + 1, (size_t)(dollar - colon1 - 1), s.salt, sizeof(s.salt));
	if (n <= 0)
		return false;
	s.salt_len = (size_t)n;
	if (!b64_decode_exact(dollar + 1, (size_t)(colon2 - dollar - 1), s.stored_key,
			      SCRAM_KEY_LEN) ||
	    !b64_decode_exact(colon2 + 1, (size_t)(end - colon2 - 1), s.server_key,
			      SCRAM_KEY_LEN)) {
		OPENSSL_cleanse(&s, sizeof(s));
		return false;
	}
	*out = s;
	OPENSSL_cleanse(&s, sizeof(s));
	return true;
}

bool scram_format_secret(const struct scram_secret *s, char *buf, size_t buflen)
{
	char salt[B64_LEN(SCRAM_MAX_SALT) + 1], sk[B64_LEN(SCRAM_KEY_LEN) + 1],
		vk[B64_LEN(SCRAM_KEY_LEN) + 1];
	int n;

	if (s->iterations < 1 || s->salt_len < 1 || s->salt_len > SCRAM_MAX_SALT)
		return false;
	if (pv_b64_encode(s->salt, s->salt_len, salt, sizeof(salt)) < 0 ||
	    pv_b64_encode(s->stored_key, SCRAM_KEY_LEN, sk, sizeof(sk)) < 0 ||
	    pv_b64_encode(s->server_key, SCRAM_KEY_LEN, vk, sizeof(vk)) < 0)
		return false;
	n = snprintf(buf, buflen, SCRAM_PREFIX "%d:%s$%s:%s", s->iterations, salt, sk, vk);
	return n > 0 && (size_t)n < buflen;
}

/*
 * SaltedPassword -> ClientKey, StoredKey, ServerKey (RFC 5802 section 3).
 * client_key may be NULL when the caller does not need it.
 */
static bool keys_from_salted(const uint8_t salted[SCRAM_KEY_LEN], uint8_t *client_key,
			     uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t ck[SCRAM_KEY_LEN];
	bool ok;

	ok = hmac256(salted, SCRAM_KEY_LEN, "Client Key", 10, ck) &&
	     sha256(ck, sizeof(ck), stored_key) &&
	     hmac256(salted, SCRAM_KEY_LEN, "Server Key", 10, server_key);
	if (ok && client_key)
		memcpy(client_key, ck, sizeof(ck));
	OPENSSL_cleanse(ck, sizeof(ck));
	return ok;
}

/*
 * PostgreSQL runs the password through SASLprep (RFC 4013: NFKC plus
 * mapping/prohibition tables) and uses the raw bytes when that fails. Pure
 * ASCII passwords come out of SASLprep unchanged, so for them the raw bytes are
 * exactly right. LIMITATION: we do not implement NFKC normalisation; non-ASCII
 * passwords are always used as raw bytes. That matches PostgreSQL whenever the
 * password is already NFKC-normalised and contains no characters SASLprep maps
 * (non-ASCII spaces, soft hyphen, zero-width characters...), which covers
 * ordinary text typed on common keyboards, but a password such as "ﬁ" (U+FB01)
 * would derive a different secret than PostgreSQL's.
 */
/*
 * PBKDF2 with thousands of iterations costs milliseconds of CPU, and a pooler
 * would pay it on every client login (secrets derived from plaintext) and
 * every server login (logging in with a password). The inputs rarely change,
 * so the results are cached, keyed by a hash of (password, salt, iterations).
 * Holding a salted password in memory is no worse than holding the password.
 */
#define SALT_CACHE_SIZE 64

static struct {
	uint8_t key[SCRAM_KEY_LEN];
	uint8_t salted[SCRAM_KEY_LEN];
	uint64_t last_use; /* 0 = empty slot */
} salt_cache[SALT_CACHE_SIZE];
static uint64_t salt_cache_clock;
static unsigned long salt_cache_hit_count;

unsigned long scram_salt_cache_hits(void)
{
	return salt_cache_hit_count;
}

static bool salt_cache_key(const char *password, size_t pl, const uint8_t *salt, size_t salt_len,
			   int iterations, uint8_t key[SCRAM_KEY_LEN])
{
	uint8_t iter[4] = {(uint8_t)(iterations >> 24), (uint8_t)(iterations >> 16),
			   (uint8_t)(iterations >> 8), (uint8_t)iterations};
	uint8_t len[8];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok;

	/* the password length keeps (password, salt) boundaries unambiguous */
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)((uint64_t)pl >> (8 * i));
	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, len, sizeof(len)) == 1 &&
	     EVP_DigestUpdate(ctx, password, pl) == 1 && EVP_DigestUpdate(ctx, salt, salt_len) == 1 &&
	     EVP_DigestUpdate(ctx, iter, sizeof(iter)) == 1 && EVP_DigestFinal_ex(ctx, key, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static int salt_cache_find(const uint8_t key[SCRAM_KEY_LEN])
{
	for (int i = 0; i < SALT_CACHE_SIZE; i++)
		if (salt_cache[i].last_use && mem_equal_ct(salt_cache[i].key, key, SCRAM_KEY_LEN))
			return i;
	return -1;
}

static void salt_cache_store(const uint8_t key[SCRAM_KEY_LEN], const uint8_t salted[SCRAM_KEY_LEN])
{
	int victim = 0;
	for (int i = 1; i < SALT_CACHE_SIZE; i++)
		if (salt_cache[i].last_use < salt_cache[victim].last_use)
			victim = i;
	memcpy(salt_cache[victim].key, key, SCRAM_KEY_LEN);
	memcpy(salt_cache[victim].salted, salted, SCRAM_KEY_LEN);
	salt_cache[victim].last_use = ++salt_cache_clock;
}

static bool salt_password(const char *password, const uint8_t *salt, size_t salt_len,
			  int iterations, uint8_t out[SCRAM_KEY_LEN])
{
	size_t pl = strlen(password);
	uint8_t key[SCRAM_KEY_LEN];
	bool have_key;
	int hit;

	if (pl > INT_MAX || salt_len > INT_MAX || iterations < 1)
		return false;
	have_key = salt_cache_key(password, pl, salt, salt_len, iterations, key);
	if (have_key && (hit = salt_cache_find(key)) >= 0) {
		memcpy(out, salt_cache[hit].salted, SCRAM_KEY_LEN);
		salt_cache[hit].last_use = ++salt_cache_clock;
		salt_cache_hit_count++;
		return true;
	}
	if (PKCS5_PBKDF2_HMAC(password, (int)pl, salt, (int)salt_len, iterations, EVP_sha256(),
			      SCRAM_KEY_LEN, out) != 1)
		return false;
	if (have_key)
		salt_cache_store(key, out);
	return true;
}

bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
				int iterations, struct scram_secret *out)
{
	uint8_t salted[SCRAM_KEY_LEN];
	bool ok;

	if (!password || !salt || salt_len < 1 || salt_len > SCRAM_MAX_SALT || iterations < 1)
		return false;
	memset(out, 0, sizeof(*out));
	ok = salt_password(password, salt, salt_len, iterations, salted) &&
	     keys_from_salted(salted, NULL, out->stored_key, out->server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	if (!ok) {
		OPENSSL_cleanse(out, sizeof(*out));
		return false;
	}
	out->iterations = iterations;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	return true;
}

void scram_mock_secret(const char *user, const uint8_t *nonce, size_t nonce_len, int iterations,
		       struct scram_secret *out)
{
	size_t ul = strlen(user);
	uint8_t d[SCRAM_KEY_LEN] = {0};
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	memset(out, 0, sizeof(*out));
	/* If hashing fails the salt stays all-zero: still deterministic, and mock always fails. */
	if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, user, ul) == 1 &&
	    (nonce_len == 0 || EVP_DigestUpdate(ctx, nonce, nonce_len) == 1))
		EVP_DigestFinal_ex(ctx, d, NULL);
	EVP_MD_CTX_free(ctx);
	out->iterations = iterations > 0 ? iterations : 4096;
	memcpy(out->salt, d, 16);
	out->salt_len = 16;
}

/* --- message parsing -------------------------------------------------------- */

struct cursor {
	const char *p;
	const char *end;
};

static bool at(const struct cursor *c, char ch)
{
	return c->p < c->end && *c->p == ch;
}

static bool eat(struct cursor *c, char ch)
{
	if (!at(c, ch))
		return false;
	c->p++;
	return true;
}

/* Read "<name>=<value>" where value runs to the next ',' or the end. */
static bool read_attr(struct cursor *c, char name, const char **val, size_t *vlen)
{
	const char *v, *comma;

	if (c->end - c->p < 2 || c->p[0] != name || c->p[1] != '=')
		return false;
	v = c->p + 2;
	comma = memchr(v, ',', (size_t)(c->end - v));
	*val = v;
	*vlen = (size_t)((comma ? comma : c->end) - v);
	c->p = v + *vlen;
	return true;
}

/* Skip an extension attribute ("<letter>=<value>"), as RFC 5802 allows. */
static bool skip_ext(struct cursor *c)
{
	const char *v;
	size_t vl;

	if (c->p >= c->end || !((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z')))
		return false;
	return read_attr(c, *c->p, &v, &vl);
}

/* RFC 5802 printable: 0x21..0x7E except ','. */
static bool valid_nonce(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7E || s[i] == ',')
			return false;
	return true;
}

static bool has_nul(const char *msg, size_t len)
{
	return memchr(msg, '\0', len) != NULL;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		strlcpy_pv(err, msg, errlen);
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
static char *auth_message(const char *bare, const char *sfirst, const char *cfinal, size_t cflen,
			  size_t *lenp)
{
	size_t bl = strlen(bare), sl = strlen(sfirst), n = bl + 1 + sl + 1 + cflen;
	char *am = malloc(n + 1);

	if (!am)
		return NULL;
	memcpy(am, bare, bl);
	am[bl] = ',';
	memcpy(am + bl + 1, sfirst, sl);
	am[bl + 1 + sl] = ',';
	memcpy(am + bl + sl + 2, cfinal, cflen);
	am[n] = '\0';
	*lenp = n;
	return am;
}

/* b64 of 18 random bytes (24 chars), or the test override. */
static bool make_nonce(const char *override, char *dst, size_t dstlen)
{
	uint8_t raw[SCRAM_NONCE_LEN];

	if (override && override[0])
		return strlcpy_pv(dst, override, dstlen) < dstlen;
	if (!random_bytes(raw, sizeof(raw)))
		return false;
	return pv_b64_encode(raw, sizeof(raw), dst, dstlen) > 0;
}

/* --- SCRAM server ----------------------------------------------------------- */

void scram_server_init(struct scram_server *st, const struct scram_secret *secret, bool mock)
{
	memset(st, 0, sizeof(*st));
	if (secret)
		st->secret = *secret;
	st->mock = mock || !secret;
}

void scram_server_free(struct scram_server *st)
{
	free(st->client_first_bare);
	free(st->server_first);
	OPENSSL_cleanse(st, sizeof(*st));
}

bool scram_server_set_nonce_for_test(struct scram_server *st, const char *nonce)
{
	size_t n = strlen(nonce);

	if (n >= sizeof(st->test_nonce) || !valid_nonce(nonce, n))
		return false;
	memcpy(st->test_nonce, nonce, n + 1);
	return true;
}

/*
 * gs2-header: cbind-flag "," [authzid] ","; then client-first-bare:
 * [reserved-mext ","] "n=" user "," "r=" nonce ["," extensions].
 * Returns the start of client-first-bare, or NULL with err set.
 */
static const char *parse_client_first(struct scram_server *st, struct cursor *c, char *err,
				      size_t errlen)
{
	const char *bare, *v;
	size_t vl;

	if (at(c, 'p')) {
		set_err(err, errlen, "channel binding is not supported");
		return NULL;
	}
	if (!(at(c, 'n') || at(c, 'y'))) {
		set_err(err, errlen, "malformed SCRAM message: bad GS2 header");
		return NULL;
	}
	st->cbind_flag = *c->p++;
	if (!eat(c, ',')) {
		set_err(err, errlen, "malformed SCRAM message: bad GS2 header");
		return NULL;
	}
	if (!eat(c, ',')) {
		set_err(err, errlen, "authorization identity is not supported");
		return NULL;
	}
	bare = c->p;
	if (at(c, 'm')) {
		set_err(err, errlen, "unsupported mandatory SCRAM extension");
		return NULL;
	}
	/* The user name is ignored: PostgreSQL uses the one from the startup packet. */
	if (!read_attr(c, 'n', &v, &vl) || !eat(c, ',') || !read_attr(c, 'r', &v, &vl)) {
		set_err(err, errlen, "malformed SCRAM message: missing attribute");
		return NULL;
	}
	if (!valid_nonce(v, vl) || vl >= sizeof(st->client_nonce)) {
		set_err(err, errlen, "malformed SCRAM message: bad nonce");
		return NULL;
	}
	memcpy(st->client_nonce, v, vl);
	st->client_nonce[vl] = '\0';
	while (c->p < c->end) {
		if (!eat(c, ',') || !skip_ext(c)) {
			set_err(err, errlen, "malformed SCRAM message: garbage after nonce");
			return NULL;
		}
	}
	return bare;
}

static char *build_server_first(struct scram_server *st)
{
	char snonce[64], salt[B64_LEN(SCRAM_MAX_SALT) + 1];
	size_t need;
	char *out;

	if (!make_nonce(st->test_nonce, snonce, sizeof(snonce)))
		return NULL;
	if (strlen(st->client_nonce) + strlen(snonce) >= sizeof(st->combined_nonce))
		return NULL;
	snprintf(st->combined_nonce, sizeof(st->combined_nonce), "%s%s", st->client_nonce, snonce);
	if (st->secret.salt_len < 1 || st->secret.salt_len > SCRAM_MAX_SALT ||
	    pv_b64_encode(st->secret.salt, st->secret.salt_len, salt, sizeof(salt)) < 0)
		return NULL;
	need = strlen(st->combined_nonce) + strlen(salt) + 32;
	out = malloc(need);
	if (out)
		snprintf(out, need, "r=%s,s=%s,i=%d", st->combined_nonce, salt,
			 st->secret.iterations);
	return out;
}

bool scram_server_handle_first(struct scram_server *st, const char *msg, size_t len, char **out,
			       char *err, size_t errlen)
{
	struct cursor c = {msg, msg + len};
	const char *bare;

	*out = NULL;
	if (st->server_first) {
		set_err(err, errlen, "unexpected SCRAM message");
		return false;
	}
	if (!msg || has_nul(msg, len)) {
		set_err(err, errlen, "malformed SCRAM message");
		return false;
	}
	bare = parse_client_first(st, &c, err, errlen);
	if (!bare)
		return false;
	st->client_first_bare = dup_n(bare, (size_t)(c.end - bare));
	st->server_first = st->client_first_bare ? build_server_first(st) : NULL;
	*out = st->server_first ? strdup(st->server_first) : NULL;
	if (!*out) {
		free(st->client_first_bare);
		free(st->server_first);
		st->client_first_bare = st->server_first = NULL;
		set_err(err, errlen, "could not build SCRAM challenge");
		return false;
	}
	return true;
}

/*
 * client-final: "c=" cbind "," "r=" nonce ["," extensions] "," "p=" proof.
 * On success *wp_len is the length of client-final-without-proof.
 */
static bool parse_client_final(struct scram_server *st, struct cursor *c, size_t *wp_len,
			       uint8_t proof[SCRAM_KEY_LEN], char *err, size_t errlen)
{
	const char *start = c->p, *v;
	const char *want = st->cbind_flag == 'y' ? "eSws" : "biws"; /* b64("y,,") / b64("n,,") */
	size_t vl;

	if (!read_attr(c, 'c', &v, &vl) || vl != 4 || memcmp(v, want, 4) != 0) {
		set_err(err, errlen, "malformed SCRAM message: unexpected channel binding");
		return false;
	}
	if (!eat(c, ',') || !read_attr(c, 'r', &v, &vl)) {
		set_err(err, errlen, "malformed SCRAM message: missing nonce");
		return false;
	}
	if (st->combined_nonce[0] == '\0' || vl != strlen(st->combined_nonce) ||
	    memcmp(v, st->combined_nonce, vl) != 0) {
		set_err(err, errlen, "SCRAM nonce mismatch");
		return false;
	}
	for (;;) {
		const char *comma = c->p;
		if (!eat(c, ',')) {
			set_err(err, errlen, "malformed SCRAM message: missing proof");
			return false;
		}
		if (read_attr(c, 'p', &v, &vl)) {
			*wp_len = (size_t)(comma - start);
			break;
		}
		if (!skip_ext(c)) {
			set_err(err, errlen, "malformed SCRAM message: bad attribute");
			return false;
		}
	}
	/* The proof is the last attribute; it cannot contain ',' so c->p must be at the end. */
	if (c->p != c->end || !b64_decode_exact(v, vl, proof, SCRAM_KEY_LEN)) {
		set_err(err, errlen, "malformed SCRAM message: bad proof");
		return false;
	}
	return true;
}

/* Recover ClientKey from the proof and check it against StoredKey; compute ServerSignature. */
static bool verify_proof(struct scram_server *st, const char *am, size_t amlen,
			 const uint8_t proof[SCRAM_KEY_LEN], uint8_t ckey[SCRAM_KEY_LEN],
			 uint8_t server_sig[SCRAM_KEY_LEN])
{
	uint8_t csig[SCRAM_KEY_LEN], h[SCRAM_KEY_LEN];
	bool ok;

	ok = hmac256(st->secret.stored_key, SCRAM_KEY_LEN, am, amlen, csig) &&
	     hmac256(st->secret.server_key, SCRAM_KEY_LEN, am, amlen, server_sig);
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		ckey[i] = proof[i] ^ csig[i];
	ok = ok && sha256(ckey, SCRAM_KEY_LEN, h);
	/* Evaluate the comparison even for mock so both paths cost the same. */
	ok = mem_equal_ct(h, st->secret.stored_key, SCRAM_KEY_LEN) && ok && !st->mock;
	OPENSSL_cleanse(csig, sizeof(csig));
	OPENSSL_cleanse(h, sizeof(h));
	return ok;
}

static char *build_server_final(const uint8_t sig[SCRAM_KEY_LEN])
{
	char *out = malloc(2 + B64_LEN(SCRAM_KEY_LEN) + 1);

	if (!out)
		return NULL;
	memcpy(out, "v=", 2);
	if (pv_b64_encode(sig, SCRAM_KEY_LEN, out + 2, B64_LEN(SCRAM_KEY_LEN) + 1) < 0) {
		free(out);
		return NULL;
	}
	return out;
}

bool scram_server_handle_final(struct scram_server *st, const char *msg, size_t len, char **out,
			       char *err, size_t errlen)
{
	struct cursor c = {msg, msg + len};
	uint8_t proof[SCRAM_KEY_LEN], ckey[SCRAM_KEY_LEN], ssig[SCRAM_KEY_LEN];
	size_t wp_len = 0, amlen = 0;
	char *am = NULL;
	bool ok = false;

	*out = NULL;
	if (!st->server_first || !st->client_first_bare || !msg || has_nul(msg, len)) {
		set_err(err, errlen, "unexpected or malformed SCRAM message");
		return false;
	}
	if (!parse_client_final(st, &c, &wp_len, proof, err, errlen))
		goto done;
	am = auth_message(st->client_first_bare, st->server_first, msg, wp_len, &amlen);
	if (!am) {
		set_err(err, errlen, "out of memory");
		goto done;
	}
	if (!verify_proof(st, am, amlen, proof, ckey, ssig)) {
		set_err(err, errlen, "invalid SCRAM proof");
		goto done;
	}
	*out = build_server_final(ssig);
	if (!*out) {
		set_err(err, errlen, "out of memory");
		goto done;
	}
	memcpy(st->client_key, ckey, SCRAM_KEY_LEN);
	st->have_client_key = true;
	ok = true;
done:
	/* One final message per exchange: a replay now fails the nonce check. */
	st->combined_nonce[0] = '\0';
	free(am);
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(ckey, sizeof(ckey));
	OPENSSL_cleanse(ssig, sizeof(ssig));
	return ok;
}

/* --- SCRAM client ----------------------------------------------------------- */

bool scram_client_init_password(struct scram_client *st, const char *password)
{
	memset(st, 0, sizeof(*st));
	st->password = strdup(password ? password : "");
	return st->password != NULL;
}

void scram_client_init_keys(struct scram_client *st, const uint8_t client_key[SCRAM_KEY_LEN],
			    const uint8_t server_key[SCRAM_KEY_LEN])
{
	memset(st, 0, sizeof(*st));
	st->use_keys = true;
	memcpy(st->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(st->server_key, server_key, SCRAM_KEY_LEN);
}

void scram_client_free(struct scram_client *st)
{
	if (st->password) {
		OPENSSL_cleanse(st->password, strlen(st->password));
		free(st->password);
	}
	free(st->client_first_bare);
	free(st->server_first);
	OPENSSL_cleanse(st, sizeof(*st));
}

bool scram_client_set_nonce_for_test(struct scram_client *st, const char *nonce)
{
	size_t n = strlen(nonce);

	if (n >= sizeof(st->client_nonce) || !valid_nonce(nonce, n))
		return false;
	memcpy(st->client_nonce, nonce, n + 1);
	return true;
}

char *scram_client_first(struct scram_client *st)
{
	size_t n;
	char *out;

	if (st->client_first_bare)
		return NULL;
	if (!st->client_nonce[0] && !make_nonce(NULL, st->client_nonce, sizeof(st->client_nonce)))
		return NULL;
	n = strlen(st->client_nonce) + 6;
	st->client_first_bare = malloc(n);
	if (!st->client_first_bare)
		return NULL;
	snprintf(st->client_first_bare, n, "n=,r=%s", st->client_nonce);
	out = malloc(n + 3);
	if (!out) {
		free(st->client_first_bare);
		st->client_first_bare = NULL;
		return NULL;
	}
	snprintf(out, n + 3, "n,,%s", st->client_first_bare);
	return out;
}

struct server_first_parts {
	const char *nonce;
	size_t nonce_len;
	uint8_t salt[SCRAM_MAX_SALT];
	size_t salt_len;
	int iterations;
};

/* server-first: [reserved-mext ","] "r=" nonce "," "s=" salt "," "i=" iter ["," ext] */
static bool parse_server_first(const struct scram_client *st, const char *msg, size_t len,
			       struct server_first_parts *sf, char *err, size_t errlen)
{
	struct cursor c = {msg, msg + len};
	const char *v;
	size_t vl, cnl = strlen(st->client_nonce);
	int n;

	if (!read_attr(&c, 'r', &sf->nonce, &sf->nonce_len) || !eat(&c, ',') ||
	    !read_attr(&c, 's', &v, &vl)) {
		set_err(err, errlen, "malformed SCRAM server-first message");
		return false;
	}
	if (!valid_nonce(sf->nonce, sf->nonce_len) || sf->nonce_len <= cnl ||
	    memcmp(sf->nonce, st->client_nonce, cnl) != 0) {
		set_err(err, errlen, "SCRAM server nonce does not extend ours");
		return false;
	}
	n = pv_b64_decode(v, vl, sf->salt, sizeof(sf->salt));
	if (n <= 0) {
		set_err(err, errlen, "malformed SCRAM salt");
		return false;
	}
	sf->salt_len = (size_t)n;
	if (!eat(&c, ',') || !read_attr(&c, 'i', &v, &vl) ||
	    !parse_iterations(v, vl, &sf->iterations)) {
		set_err(err, errlen, "malformed SCRAM iteration count");
		return false;
	}
	while (c.p < c.end)
		if (!eat(&c, ',') || !skip_ext(&c)) {
			set_err(err, errlen, "malformed SCRAM server-first message");
			return false;
		}
	return true;
}

/* Fill client_key/server_key (from the password unless pass-through keys were given). */
static bool client_derive_keys(struct scram_client *st, const struct server_first_parts *sf,
			       uint8_t stored_key[SCRAM_KEY_LEN])
{
	/* Pass-through: the keys already are the result of salting; skip the PBKDF2. */
	if (st->use_keys)
		return sha256(st->client_key, SCRAM_KEY_LEN, stored_key);
	if (!st->password ||
	    !salt_password(st->password, sf->salt, sf->salt_len, sf->iterations,
			   st->salted_password))
		return false;
	return keys_from_salted(st->salted_password, st->client_key, stored_key, st->server_key);
}

/* "c=biws,r=<nonce>,p=<proof>" and the expected server signature. */
static char *client_build_final(struct scram_client *st, const struct server_first_parts *sf,
				const uint8_t stored_key[SCRAM_KEY_LEN])
{
	uint8_t csig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	size_t wplen = 9 + sf->nonce_len, amlen, cap = wplen + 3 + B64_LEN(SCRAM_KEY_LEN) + 1;
	char *out = malloc(cap), *am = NULL;
	bool ok = false;

	if (!out)
		return NULL;
	memcpy(out, "c=biws,r=", 9);
	memcpy(out + 9, sf->nonce, sf->nonce_len);
	am = auth_message(st->client_first_bare, st->server_first, out, wplen, &amlen);
	if (am && hmac256(stored_key, SCRAM_KEY_LEN, am, amlen, csig) &&
	    hmac256(st->server_key, SCRAM_KEY_LEN, am, amlen, st->expected_server_signature)) {
		for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
			proof[i] = st->client_key[i] ^ csig[i];
		memcpy(out + wplen, ",p=", 3);
		ok = pv_b64_encode(proof, SCRAM_KEY_LEN, out + wplen + 3, cap - wplen - 3) > 0;
	}
	free(am);
	OPENSSL_cleanse(csig, sizeof(csig));
	OPENSSL_cleanse(proof, sizeof(proof));
	if (!ok) {
		free(out);
		return NULL;
	}
	return out;
}

char *scram_client_final(struct scram_client *st, const char *server_first, size_t len, char *err,
			 size_t errlen)
{
	struct server_first_parts sf;
	uint8_t stored_key[SCRAM_KEY_LEN];
	char *out = NULL;

	if (!st->client_first_bare || st->server_first || !server_first ||
	    has_nul(server_first, len)) {
		set_err(err, errlen, "unexpected or malformed SCRAM server-first message");
		return NULL;
	}
	if (!parse_server_first(st, server_first, len, &sf, err, errlen))
		return NULL;
	st->server_first = dup_n(server_first, len);
	if (!st->server_first) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	if (!client_derive_keys(st, &sf, stored_key))
		set_err(err, errlen, "SCRAM key derivation failed");
	else if (!(out = client_build_final(st, &sf, stored_key)))
		set_err(err, errlen, "out of memory");
	OPENSSL_cleanse(stored_key, sizeof(stored_key));
	return out;
}

bool scram_client_verify_final(struct scram_client *st, const char *server_final, size_t len)
{
	struct cursor c = {server_final, server_final + len};
	uint8_t sig[SCRAM_KEY_LEN];
	const char *v;
	size_t vl;
	bool ok;

	/* Only meaningful once our client-final has been built ("e=" errors fail here too). */
	if (!st->server_first || !server_final || !read_attr(&c, 'v', &v, &vl))
		return false;
	while (c.p < c.end)
		if (!eat(&c, ',') || !skip_ext(&c))
			return false;
	if (!b64_decode_exact(v, vl, sig, SCRAM_KEY_LEN))
		return false;
	ok = mem_equal_ct(sig, st->expected_server_signature, SCRAM_KEY_LEN);
	OPENSSL_cleanse(sig, sizeof(sig));
	return ok;
}
