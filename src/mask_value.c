/*
 * mask_value.c - masking methods for one column value and the content
 * detectors that find sensitive substrings in arbitrary text.
 *
 * Everything here runs on the result path (per DataRow value), so the
 * detectors are hand-written linear scanners with a cheap first-byte
 * prefilter: no regex library, and no allocation unless a match is masked.
 */
#include "mask_value.h"

#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "util.h"

#define OID_NAME    19u
#define OID_TEXT    25u
#define OID_JSON    114u
#define OID_UNKNOWN 705u
#define OID_BPCHAR  1042u
#define OID_VARCHAR 1043u
#define OID_JSONB   3802u

#define JSONB_VERSION 1

#define HASH_BYTES 16 /* of the 32-byte HMAC: 128 bits is plenty for a pseudonym */

static const char REDACTED[] = "****";

/* --- buffer helpers ---------------------------------------------------------------------- */

/*
 * buf_reserve may compact (moving pos to 0), so the amount of pending data is
 * what identifies "everything this call appended", not len.
 */
static void buf_rollback(struct pv_buf *out, size_t pending_before)
{
	out->len = out->pos + pending_before;
}

static bool buf_fill(struct pv_buf *out, uint8_t c, size_t n)
{
	if (n == 0) /* an empty buffer has no data pointer to offset */
		return true;
	if (!buf_reserve(out, n))
		return false;
	memset(out->data + out->len, c, n);
	out->len += n;
	return true;
}

/* --- names --------------------------------------------------------------------------------- */

static const char *const method_names[] = {
    [MM_REDACT] = "redact", [MM_PARTIAL] = "partial", [MM_HASH] = "hash",
    [MM_NULL] = "null",     [MM_EMAIL] = "email",
};

#define N_METHODS (sizeof(method_names) / sizeof(method_names[0]))

int mask_method_from_name(const char *name)
{
	if (!name)
		return -1;
	for (size_t i = 0; i < N_METHODS; i++)
		if (strcmp(name, method_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *mask_method_name(enum mask_method m)
{
	if ((unsigned)m < N_METHODS)
		return method_names[m];
	return "?";
}

/* --- UTF-8 --------------------------------------------------------------------------------- */

/*
 * Length of the code point starting at s[0] (n >= 1 bytes available). A
 * malformed or truncated sequence counts as one 1-byte character, so any
 * byte string has a well-defined character count and nothing is skipped.
 */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
	size_t need;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		need = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		need = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		need = 4;
	else
		return 1;
	if (need > n)
		return 1;
	for (size_t i = 1; i < need; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 1;
	/* Overlong 3/4-byte forms and surrogates/out-of-range code points. */
	if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
	    (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
		return 1;
	return need;
}

static bool utf8_valid_at(const uint8_t *s, size_t n)
{
	return s[0] < 0x80 || utf8_char_len(s, n) > 1;
}

static size_t utf8_count(const uint8_t *s, size_t n)
{
	size_t count = 0;

	for (size_t i = 0; i < n; count++)
		i += utf8_char_len(s + i, n - i);
	return count;
}

/* --- methods ------------------------------------------------------------------------------- */

/*
 * '*' for every character but the last keep_last. A value of at most
 * keep_last characters is masked entirely: revealing "the last 4" of a
 * 4-character value would reveal all of it.
 */
static bool all_ascii(const uint8_t *s, size_t n)
{
	uint64_t acc = 0, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= s[i];
	return (acc & 0x8080808080808080ULL) == 0;
}

static bool mask_partial(int keep_last, const uint8_t *in, size_t len, struct pv_buf *out)
{
	size_t keep = keep_last > 0 ? (size_t)keep_last : 0;
	size_t total, hidden, i = 0;

	/* Most values are ASCII: one character per byte, no decoding (hot path). */
	if (all_ascii(in, len)) {
		if (len <= keep)
			return buf_fill(out, '*', len);
		return buf_fill(out, '*', len - keep) && buf_append(out, in + len - keep, keep);
	}
	total = utf8_count(in, len);
	if (total <= keep)
		return buf_fill(out, '*', total);
	hidden = total - keep;
	for (size_t c = 0; c < hidden; c++)
		i += utf8_char_len(in + i, len - i);
	return buf_fill(out, '*', hidden) && buf_append(out, in + i, len - i);
}

static bool mask_hash(const struct mask_spec *spec, const uint8_t *in, size_t len,
                      struct pv_buf *out)
{
	static const uint8_t empty[1];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char txt[2 + 2 * HASH_BYTES + 1];
	size_t klen = spec->key_len < MASK_HASH_KEY_MAX ? spec->key_len : MASK_HASH_KEY_MAX;

	/* HMAC() treats a NULL data pointer specially; never hand it one. */
	if (!HMAC(EVP_sha256(), spec->key, (int)klen, len ? in : empty, len, md, &mdlen) ||
	    mdlen < HASH_BYTES)
		return false;
	txt[0] = 'h';
	txt[1] = ':';
	hex_encode(md, HASH_BYTES, txt + 2);
	return buf_append(out, txt, sizeof(txt) - 1); /* without the NUL */
}

static bool is_domain_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.';
}

/*
 * Whether d[0..n) is a plausible mail domain: LDH characters, at least one
 * dot, no empty label. Anything else is not kept, because the "domain" of a
 * non-email value may be the sensitive part itself.
 */
static bool domain_ok(const uint8_t *d, size_t n)
{
	bool dot = false;

	if (n < 3 || d[0] == '.' || d[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_domain_char(d[i]))
			return false;
		if (d[i] == '.') {
			if (d[i - 1] == '.')
				return false;
			dot = true;
		}
	}
	return dot;
}

static bool mask_email(const uint8_t *in, size_t len, struct pv_buf *out)
{
	const uint8_t *at = NULL;

	for (size_t i = len; i-- > 0;)
		if (in[i] == '@') {
			at = in + i;
			break;
		}
	if (!at || at == in || !domain_ok(at + 1, len - (size_t)(at - in) - 1))
		return buf_append(out, REDACTED, sizeof(REDACTED) - 1);
	return buf_append(out, REDACTED, sizeof(REDACTED) - 1) &&
	       buf_append(out, at, len - (size_t)(at - in));
}

bool mask_text_value(const struct mask_spec *spec, const char *in, size_t len, struct pv_buf *out,
                     bool *is_null)
{
	const uint8_t *u = (const uint8_t *)in;
	size_t before = buf_pending(out);
	bool ok;

	*is_null = false;
	switch (spec->method) {
	case MM_NULL:
		*is_null = true;
		return true;
	case MM_PARTIAL:
		ok = mask_partial(spec->keep_last, u, len, out);
		break;
	case MM_HASH:
		ok = mask_hash(spec, u, len, out);
		break;
	case MM_EMAIL:
		ok = mask_email(u, len, out);
		break;
	case MM_REDACT:
	default: /* an unknown method must still hide the value */
		ok = buf_append(out, REDACTED, sizeof(REDACTED) - 1);
		break;
	}
	if (!ok)
		buf_rollback(out, before);
	return ok;
}

/* --- JSON ---------------------------------------------------------------------------------- */

/*
 * Append s as a JSON string literal. Invalid UTF-8 (partial keeps raw tail
 * bytes of the input) becomes U+FFFD so the result always parses.
 */
static bool json_quote(const uint8_t *s, size_t n, struct pv_buf *out)
{
	static const char hex[] = "0123456789abcdef";
	static const uint8_t fffd[] = {0xEF, 0xBF, 0xBD};
	bool ok = buf_append(out, "\"", 1);

	for (size_t i = 0; ok && i < n;) {
		size_t cl = utf8_char_len(s + i, n - i);
		uint8_t c = s[i];

		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			ok = buf_append(out, e, 2);
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
			ok = buf_append(out, e, 6);
		} else if (!utf8_valid_at(s + i, n - i)) {
			ok = buf_append(out, fffd, sizeof(fffd));
		} else {
			ok = buf_append(out, s + i, cl);
		}
		i += cl;
	}
	return ok && buf_append(out, "\"", 1);
}

bool mask_json_text_value(const struct mask_spec *spec, const char *in, size_t len,
                          struct pv_buf *out, bool *is_null)
{
	struct pv_buf tmp;
	size_t before = buf_pending(out);
	bool ok;

	buf_init(&tmp);
	ok = mask_text_value(spec, in, len, &tmp, is_null);
	if (ok && !*is_null)
		ok = json_quote(tmp.data ? tmp.data + tmp.pos : (const uint8_t *)"",
		                buf_pending(&tmp), out);
	buf_free(&tmp);
	if (!ok)
		buf_rollback(out, before);
	return ok;
}

static bool is_text_oid(uint32_t oid)
{
	return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_BPCHAR || oid == OID_NAME ||
	       oid == OID_UNKNOWN;
}

bool mask_binary_value(const struct mask_spec *spec, uint32_t type_oid, const char *in, size_t len,
                       struct pv_buf *out, bool *is_null)
{
	size_t before = buf_pending(out);
	uint8_t ver = JSONB_VERSION;

	if (is_text_oid(type_oid))
		return mask_text_value(spec, in, len, out, is_null);
	/* json's binary form is its text; keep it parseable for the client's decoder. */
	if (type_oid == OID_JSON)
		return mask_json_text_value(spec, in, len, out, is_null);
	/* jsonb: version byte + JSON text. An unknown version can't be rewritten safely. */
	if (type_oid == OID_JSONB && len >= 1 && (uint8_t)in[0] == JSONB_VERSION &&
	    spec->method != MM_NULL) {
		if (!buf_append(out, &ver, 1))
			return false;
		if (!mask_json_text_value(spec, in + 1, len - 1, out, is_null)) {
			buf_rollback(out, before);
			return false;
		}
		return true;
	}
	*is_null = true;
	return true;
}

/* --- detector names ------------------------------------------------------------------------ */

static const struct {
	uint32_t bit;
	const char *name;
} detector_names[] = {
    {MD_CREDIT_CARD, "credit_card"},
    {MD_US_SSN, "us_ssn"},
    {MD_EMAIL, "email"},
    {MD_JWT, "jwt"},
    {MD_AWS_ACCESS_KEY, "aws_access_key"},
};

#define N_DETECTORS (sizeof(detector_names) / sizeof(detector_names[0]))

uint32_t mask_detector_from_name(const char *name)
{
	if (!name)
		return 0;
	for (size_t i = 0; i < N_DETECTORS; i++)
		if (strcmp(name, detector_names[i].name) == 0)
			return detector_names[i].bit;
	return 0;
}

const char *mask_detector_name(uint32_t single_bit)
{
	for (size_t i = 0; i < N_DETECTORS; i++)
		if (detector_names[i].bit == single_bit)
			return detector_names[i].name;
	return "?";
}

/* --- character classes --------------------------------------------------------------------- */

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_upper(uint8_t c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_alpha(uint8_t c)
{
	return is_upper(c) || (c >= 'a' && c <= 'z');
}

static bool is_alnum(uint8_t c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_b64url(uint8_t c)
{
	return is_alnum(c) || c == '-' || c == '_';
}

/* Local-part characters: the common RFC 5322 subset seen in real addresses. */
static bool is_local_char(uint8_t c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* True when s[i] (within [0,n)) exists and is alphanumeric: a word continues there. */
static bool alnum_at(const uint8_t *s, size_t n, size_t i)
{
	return i < n && is_alnum(s[i]);
}

/* Whether position i starts a word: nothing alphanumeric right before it. */
static bool word_start(const uint8_t *s, size_t i)
{
	return i == 0 || !is_alnum(s[i - 1]);
}

/*
 * Each detector: find the first match starting at or after `from`. A match
 * is a pure function of the text around it (except the email local part,
 * which is clipped at `from`), so a result found from an earlier position
 * stays the first match from any later position up to its start.
 */
typedef bool (*detect_fn)(const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *ml);

/* --- credit card --------------------------------------------------------------------------- */

#define CC_MIN 13
#define CC_MAX 19

static bool luhn_ok(const uint8_t *d, size_t n)
{
	unsigned sum = 0, nonzero = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned v = d[n - 1 - i];
		if (i & 1) {
			v *= 2;
			if (v > 9)
				v -= 9;
		}
		sum += v;
		nonzero |= d[i];
	}
	/* All zeros passes Luhn but is a placeholder, not a card. */
	return nonzero && sum % 10 == 0;
}

/*
 * A card candidate at s[i]: up to 19 digits with single ' ' or '-' between
 * them. A match may only end where a digit group ends (never inside a digit
 * run) and where no letter follows; the longest Luhn-valid length wins.
 */
static bool card_at(const uint8_t *s, size_t n, size_t i, size_t *ml)
{
	uint8_t digits[CC_MAX];
	size_t nd = 0, j = i, best = 0;

	while (nd < CC_MAX && j < n && is_digit(s[j])) {
		digits[nd++] = (uint8_t)(s[j++] - '0');
		bool group_end = j >= n || !is_digit(s[j]);
		if (group_end && nd >= CC_MIN && !alnum_at(s, n, j) && luhn_ok(digits, nd))
			best = j - i;
		if (j + 1 < n && (s[j] == ' ' || s[j] == '-') && is_digit(s[j + 1]))
			j++;
	}
	*ml = best;
	return best > 0;
}

static bool detect_card(const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *ml)
{
	for (size_t i = from; i + CC_MIN <= n; i++) {
		if (!is_digit(s[i]) || !word_start(s, i))
			continue;
		if (card_at(s, n, i, ml)) {
			*ms = i;
			return true;
		}
	}
	return false;
}

/* --- US SSN -------------------------------------------------------------------------------- */

static unsigned digits_val(const uint8_t *s, size_t k)
{
	unsigned v = 0;

	for (size_t i = 0; i < k; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	return v;
}

/* ddd-dd-dddd at s[i], as a whole word, with the never-issued ranges excluded. */
static bool ssn_at(const uint8_t *s, size_t n, size_t i)
{
	static const char shape[] = "ddd-dd-dddd";
	unsigned area;

	if (n - i < sizeof(shape) - 1 || alnum_at(s, n, i + sizeof(shape) - 1))
		return false;
	for (size_t k = 0; k < sizeof(shape) - 1; k++)
		if (shape[k] == 'd' ? !is_digit(s[i + k]) : s[i + k] != '-')
			return false;
	area = digits_val(s + i, 3);
	return area != 0 && area != 666 && area < 900 && digits_val(s + i + 4, 2) != 0 &&
	       digits_val(s + i + 7, 4) != 0;
}

static bool detect_ssn(const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *ml)
{
	for (size_t i = from; i + 11 <= n; i++) {
		if (is_digit(s[i]) && word_start(s, i) && ssn_at(s, n, i)) {
			*ms = i;
			*ml = 11;
			return true;
		}
	}
	return false;
}

/* --- email --------------------------------------------------------------------------------- */

/*
 * Domain after the '@' at s[at]: dot-separated [A-Za-z0-9-] labels, at least
 * two, the last (TLD) alphabetic and 2+ long. A trailing sentence '.' is not
 * part of it. Returns the domain length, 0 if there is none.
 */
static size_t email_domain(const uint8_t *s, size_t n, size_t at)
{
	size_t j = at + 1, labels = 0, tld_start = j;

	for (;;) {
		size_t k = j;
		while (k < n && (is_alnum(s[k]) || s[k] == '-'))
			k++;
		if (k == j)
			break;
		labels++;
		tld_start = j;
		j = k;
		if (j + 1 < n && s[j] == '.' && (is_alnum(s[j + 1]) || s[j + 1] == '-'))
			j++;
		else
			break;
	}
	if (labels < 2 || j - tld_start < 2)
		return 0;
	for (size_t k = tld_start; k < j; k++)
		if (!is_alpha(s[k]))
			return 0;
	return j - (at + 1);
}

static bool detect_email(const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *ml)
{
	size_t i = from;

	while (i < n) {
		const uint8_t *p = memchr(s + i, '@', n - i);
		size_t at, st, dl;

		if (!p)
			return false;
		at = (size_t)(p - s);
		i = at + 1;
		/* Local part: the run of local characters before '@', never before from. */
		st = at;
		while (st > from && is_local_char(s[st - 1]))
			st--;
		while (st < at && s[st] == '.') /* "see.bob@" is fine, ".bob" is not a local part */
			st++;
		if (st == at || (dl = email_domain(s, n, at)) == 0)
			continue;
		*ms = st;
		*ml = at + 1 + dl - st;
		return true;
	}
	return false;
}

/* --- JWT ----------------------------------------------------------------------------------- */

#define JWT_HEADER_MIN  10 /* base64 of {"alg":"x"} is longer still */
#define JWT_PAYLOAD_MIN 3  /* "e30" = {} */

static size_t b64url_run(const uint8_t *s, size_t n, size_t i)
{
	size_t j = i;

	while (j < n && is_b64url(s[j]))
		j++;
	return j - i;
}

/*
 * header.payload.signature, header starting "eyJ" ('{"'). The signature may
 * be empty (alg "none" tokens still carry claims worth hiding).
 */
static bool jwt_at(const uint8_t *s, size_t n, size_t i, size_t *ml)
{
	size_t h = b64url_run(s, n, i), j, p;

	if (h < JWT_HEADER_MIN || i + h >= n || s[i + h] != '.')
		return false;
	j = i + h + 1;
	p = b64url_run(s, n, j);
	if (p < JWT_PAYLOAD_MIN || j + p >= n || s[j + p] != '.')
		return false;
	j += p + 1;
	j += b64url_run(s, n, j);
	*ml = j - i;
	return true;
}

static bool detect_jwt(const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *ml)
{
	size_t i = from;

	while (i + 3 <= n) {
		const uint8_t *p = memchr(s + i, 'e', n - i);
		size_t at;

		if (!p)
			return false;
		at = (size_t)(p - s);
		i = at + 1;
		if (at + 3 > n || s[at + 1] != 'y' || s[at + 2] != 'J')
			continue;
		if (at > 0 && is_b64url(s[at - 1]))
			continue;
		if (jwt_at(s, n, at, ml)) {
			*ms = at;
			return true;
		}
	}
	return false;
}

/* --- AWS access key id --------------------------------------------------------------------- */

#define AWS_KEY_LEN 20

static bool aws_at(const uint8_t *s, size_t n, size_t i)
{
	if (n - i < AWS_KEY_LEN || (memcmp(s + i, "AKIA", 4) != 0 && memcmp(s + i, "ASIA", 4) != 0))
		return false;
	for (size_t k = 4; k < AWS_KEY_LEN; k++)
		if (!is_upper(s[i + k]) && !is_digit(s[i + k]))
			return false;
	return !alnum_at(s, n, i + AWS_KEY_LEN);
}

static bool detect_aws(const uint8_t *s, size_t n, size_t from, size_t *ms, size_t *ml)
{
	size_t i = from;

	while (i + AWS_KEY_LEN <= n) {
		const uint8_t *p = memchr(s + i, 'A', n - i);
		size_t at;

		if (!p)
			return false;
		at = (size_t)(p - s);
		i = at + 1;
		if (word_start(s, at) && aws_at(s, n, at)) {
			*ms = at;
			*ml = AWS_KEY_LEN;
			return true;
		}
	}
	return false;
}

/* --- combining detectors ------------------------------------------------------------------- */

static const detect_fn detect_fns[N_DETECTORS] = {
    detect_card, detect_ssn, detect_email, detect_jwt, detect_aws,
};

/* Cached next match of one detector; start == SIZE_MAX: none left in the text. */
struct det_state {
	size_t start, end;
	bool stale; /* must be searched again from the current position */
};

#define NO_MATCH SIZE_MAX

static void det_refresh(uint32_t detectors, const uint8_t *s, size_t n, size_t from,
                        struct det_state st[N_DETECTORS])
{
	for (size_t d = 0; d < N_DETECTORS; d++) {
		size_t ms, ml;

		if (!st[d].stale)
			continue;
		st[d].stale = false;
		st[d].start = st[d].end = NO_MATCH;
		if ((detectors & detector_names[d].bit) && detect_fns[d](s, n, from, &ms, &ml)) {
			st[d].start = ms;
			st[d].end = ms + ml;
		}
	}
}

/* Earliest cached match, ties broken by length; false when no detector has one. */
static bool det_earliest(const struct det_state st[N_DETECTORS], size_t *ms, size_t *me)
{
	*ms = NO_MATCH;
	*me = 0;
	for (size_t d = 0; d < N_DETECTORS; d++) {
		if (st[d].start == NO_MATCH)
			continue;
		if (st[d].start < *ms || (st[d].start == *ms && st[d].end > *me)) {
			*ms = st[d].start;
			*me = st[d].end;
		}
	}
	return *ms != NO_MATCH;
}

/*
 * Grow [ms, me) over every cached match that overlaps it, so that a second
 * detector's match straddling the first one's end is masked too instead of
 * leaking its tail. Overlapped detectors become stale.
 */
static size_t det_absorb(struct det_state st[N_DETECTORS], size_t me)
{
	bool grew = true;

	while (grew) {
		grew = false;
		for (size_t d = 0; d < N_DETECTORS; d++) {
			if (st[d].stale || st[d].start == NO_MATCH || st[d].start >= me)
				continue;
			st[d].stale = true;
			if (st[d].end > me) {
				me = st[d].end;
				grew = true;
			}
		}
	}
	return me;
}

bool mask_detect_first(uint32_t detectors, const char *s, size_t len, size_t *start, size_t *mlen)
{
	struct det_state st[N_DETECTORS];
	size_t ms, me;

	if (len == 0)
		return false;
	for (size_t d = 0; d < N_DETECTORS; d++)
		st[d].stale = true;
	det_refresh(detectors, (const uint8_t *)s, len, 0, st);
	if (!det_earliest(st, &ms, &me))
		return false;
	*start = ms;
	*mlen = me - ms;
	return true;
}

bool mask_scan_text(uint32_t detectors, const struct mask_spec *spec, const char *s, size_t len,
                    struct pv_buf *out, bool *changed)
{
	const uint8_t *u = (const uint8_t *)s;
	struct det_state st[N_DETECTORS];
	size_t before = buf_pending(out), pos = 0, ms, me;
	bool is_null;

	*changed = false;
	if (len == 0) /* s may be NULL; no pointer arithmetic on it */
		return true;
	for (size_t d = 0; d < N_DETECTORS; d++)
		st[d].stale = true;
	for (;;) {
		det_refresh(detectors, u, len, pos, st);
		if (!det_earliest(st, &ms, &me))
			break;
		me = det_absorb(st, me);
		if (!buf_append(out, u + pos, ms - pos) ||
		    !mask_text_value(spec, s + ms, me - ms, out, &is_null))
			goto fail;
		*changed = true;
		pos = me;
	}
	if (buf_append(out, u + pos, len - pos))
		return true;
fail:
	buf_rollback(out, before);
	*changed = false;
	return false;
}
