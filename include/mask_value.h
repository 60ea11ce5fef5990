/*
 * mask_value.h - what a masked value becomes: the masking methods (redact,
 * partial, hash, null, email) applied to one column value, and the content
 * detectors (card numbers, SSNs, emails, JWTs, AWS keys) that find sensitive
 * substrings in any text.
 *
 * Owns: value transformation and detection only. Pure functions, no I/O, no
 * policy lookup: which column gets which spec is mask_catalog.h; where rows
 * are rewritten is mask.c.
 */
#ifndef PV_MASK_VALUE_H
#define PV_MASK_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum mask_method {
	MM_REDACT = 0, /* every value becomes the fixed text "****" */
	MM_PARTIAL,    /* all but the last keep_last characters become '*' */
	MM_HASH,       /* "h:" + first 16 bytes of HMAC-SHA256(key, value) as hex */
	MM_NULL,       /* SQL NULL */
	MM_EMAIL,      /* local part replaced: "****@domain"; not an email: redact */
};

#define MASK_HASH_KEY_MAX 64

/* One resolved masking method with its parameters (immutable once built). */
struct mask_spec {
	enum mask_method method;
	int keep_last;                  /* MM_PARTIAL: characters kept at the end */
	uint8_t key[MASK_HASH_KEY_MAX]; /* MM_HASH: the HMAC key */
	size_t key_len;
};

/* Name <-> method ("redact", "partial", "hash", "null", "email"); -1 if unknown. */
int mask_method_from_name(const char *name);
const char *mask_method_name(enum mask_method m);

/*
 * Mask one text-format value of len bytes (not NUL-terminated). On success
 * the replacement is appended to out and *is_null tells whether the column
 * becomes NULL instead (then nothing is appended). false only on allocation
 * failure (out is then left as it was). Characters are UTF-8 code points for
 * MM_PARTIAL (a malformed byte counts as one character); a value of at most
 * keep_last characters is masked entirely.
 */
bool mask_text_value(const struct mask_spec *spec, const char *in, size_t len, struct pv_buf *out,
                     bool *is_null);

/*
 * Like mask_text_value, but the replacement is emitted as a JSON string
 * literal ("\"****\"", invalid UTF-8 as U+FFFD), so a json/jsonb column stays
 * parseable for the client. For text-format json/jsonb values when the caller
 * knows the column type.
 */
bool mask_json_text_value(const struct mask_spec *spec, const char *in, size_t len,
                          struct pv_buf *out, bool *is_null);

/*
 * Mask one binary-format value of the given type OID. Text-like types (text,
 * varchar, bpchar, name, unknown) are masked as text (their binary form is
 * the text); json likewise but as a JSON string (mask_json_text_value); jsonb
 * keeps its version byte 1 followed by the JSON string (any other version
 * becomes NULL); every other type becomes NULL (*is_null), since a fake value
 * of the wrong width would corrupt the client's decoding. On allocation
 * failure (false) out is left as it was.
 */
bool mask_binary_value(const struct mask_spec *spec, uint32_t type_oid, const char *in, size_t len,
                       struct pv_buf *out, bool *is_null);

/* ---- content detectors ---- */

enum mask_detector {
	MD_CREDIT_CARD = 1u << 0, /* 13-19 digits, spaces/dashes allowed, Luhn-valid */
	MD_US_SSN = 1u << 1,      /* ddd-dd-dddd, not 000/666/9xx area, not 00 group, not 0000 */
	MD_EMAIL = 1u << 2,
	MD_JWT = 1u << 3, /* header.payload.sig in base64url, header starting "eyJ" ('{"') */
	MD_AWS_ACCESS_KEY = 1u << 4, /* (AKIA|ASIA)[A-Z0-9]{16} */
};

/* "credit_card", "us_ssn", "email", "jwt", "aws_access_key" -> bit; 0 if unknown. */
uint32_t mask_detector_from_name(const char *name);
const char *mask_detector_name(uint32_t single_bit);

/*
 * Find the first match of any detector in `detectors` in s[0..len). Returns
 * true and sets *start / *mlen, or false when there is none. Matches starting
 * at the same offset: the longest wins. Linear in len, no allocation.
 */
bool mask_detect_first(uint32_t detectors, const char *s, size_t len, size_t *start, size_t *mlen);

/*
 * Copy s to out with every detector match replaced by spec's masking of the
 * matched text (MM_NULL replaces with nothing). *changed says whether any
 * match was found; when none is, out receives the text unchanged. Matches of
 * different detectors that overlap are merged and masked as one span, so no
 * tail of either leaks. false only on allocation failure (out is then left as
 * it was).
 */
bool mask_scan_text(uint32_t detectors, const struct mask_spec *spec, const char *s, size_t len,
                    struct pv_buf *out, bool *changed);

#endif
