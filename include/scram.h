/*
 * scram.h - password cryptography for both sides of the pooler:
 * MD5 (PostgreSQL's md5 auth), SCRAM-SHA-256 (RFC 5802 / RFC 7677 as used by
 * PostgreSQL, no channel binding) as the server that verifies a client, and as
 * the client that logs in to PostgreSQL, including SCRAM pass-through
 * (logging in with the ClientKey recovered from the client's own proof when
 * pgvigil holds only the SCRAM secret).
 *
 * No I/O here: callers feed message bodies in and send what comes out.
 */
#ifndef PV_SCRAM_H
#define PV_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32 /* SHA-256 */
#define SCRAM_MAX_SALT 64
#define SCRAM_NONCE_LEN 18 /* raw bytes; base64 in messages */

/* --- MD5 ------------------------------------------------------------------ */

/* out = "md5" + hex(md5(password || user)); out must hold 36 bytes. */
void md5_password_secret(const char *password, const char *user, char out[36]);
/* out = "md5" + hex(md5(hex_part_of(md5secret) || salt)); md5secret is "md5<32 hex>". */
void md5_salted_response(const char *md5secret, const uint8_t salt[4], char out[36]);

/* --- SCRAM secrets ---------------------------------------------------------- */

struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* Parse "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". */
bool scram_parse_secret(const char *text, struct scram_secret *out);
/* Derive a secret from a plaintext password (SASLprep is applied when the password is valid UTF-8
 * per PostgreSQL's rule; otherwise the raw bytes are used). */
bool scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
				int iterations, struct scram_secret *out);
/* Format as the text form above. buf of >= 256 bytes. */
bool scram_format_secret(const struct scram_secret *s, char *buf, size_t buflen);
/*
 * Deterministic fake secret for an unknown user, so that a probing client sees
 * the same challenge shape and cannot learn whether the user exists.
 * salt = first 16 bytes of SHA-256(user || nonce).
 */
void scram_mock_secret(const char *user, const uint8_t *nonce, size_t nonce_len, int iterations,
		       struct scram_secret *out);

/* --- pgvigil as SCRAM server (verifying a client) -------------------------- */

struct scram_server {
	struct scram_secret secret;
	bool mock;			/* unknown user: always fail at the end */
	char *client_first_bare;	/* malloc'd */
	char *server_first;		/* malloc'd */
	char client_nonce[128];
	char combined_nonce[256];
	/* Filled on success: the client's ClientKey recovered from its proof,
	 * so pgvigil can log in to PostgreSQL with the same secret (pass-through). */
	uint8_t client_key[SCRAM_KEY_LEN];
	bool have_client_key;
	/* GS2 channel-binding flag of the client-first ('n' or 'y'); its c= must match. */
	char cbind_flag;
	/* Server nonce part to use instead of a random one ("" = random). Tests only. */
	char test_nonce[64];
};

void scram_server_init(struct scram_server *st, const struct scram_secret *secret, bool mock);
void scram_server_free(struct scram_server *st);
/*
 * Handle the SASLInitialResponse payload (client-first-message, e.g.
 * "n,,n=,r=<nonce>"). Channel binding ('p' flag) and authzid are refused.
 * On success *out is a malloc'd server-first-message. On failure returns false
 * with a short reason in err.
 */
bool scram_server_handle_first(struct scram_server *st, const char *msg, size_t len, char **out,
			       char *err, size_t errlen);
/*
 * Handle the SASLResponse payload (client-final-message). Verifies the proof.
 * On success *out is a malloc'd server-final-message ("v=...") and
 * st->client_key is set. Returns false if the proof is wrong (or mock).
 */
bool scram_server_handle_final(struct scram_server *st, const char *msg, size_t len, char **out,
			       char *err, size_t errlen);

/* --- pgvigil as SCRAM client (logging in to PostgreSQL) -------------------- */

struct scram_client {
	/* Either a password, or keys for pass-through. */
	char *password; /* malloc'd or NULL */
	bool use_keys;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	char client_nonce[64];
	char *client_first_bare;
	char *server_first;
	uint8_t salted_password[SCRAM_KEY_LEN];
	uint8_t expected_server_signature[SCRAM_KEY_LEN];
};

bool scram_client_init_password(struct scram_client *st, const char *password);
void scram_client_init_keys(struct scram_client *st, const uint8_t client_key[SCRAM_KEY_LEN],
			    const uint8_t server_key[SCRAM_KEY_LEN]);
void scram_client_free(struct scram_client *st);
/* client-first-message "n,,n=,r=<nonce>" (malloc'd). */
char *scram_client_first(struct scram_client *st);
/* Given server-first-message, produce client-final-message (malloc'd) or NULL + err. */
char *scram_client_final(struct scram_client *st, const char *server_first, size_t len, char *err,
			 size_t errlen);
/* Verify server-final-message "v=<sig>". */
bool scram_client_verify_final(struct scram_client *st, const char *server_final, size_t len);

/* --- tests only ------------------------------------------------------------ */

/*
 * Fix the nonces so known test vectors (RFC 7677) can be replayed. Must be
 * called after *_init and before the first message; the nonce must be printable
 * ASCII without ',' and shorter than the field it is copied to. Never used by the
 * pooler itself.
 */
bool scram_client_set_nonce_for_test(struct scram_client *st, const char *nonce);
bool scram_server_set_nonce_for_test(struct scram_server *st, const char *nonce);

/* How often a PBKDF2 result came from the cache (tests, diagnostics). */
unsigned long scram_salt_cache_hits(void);

/* Base64 helpers (standard alphabet with padding). Return output length or -1. */
int pv_b64_encode(const uint8_t *src, size_t len, char *dst, size_t dstlen);
int pv_b64_decode(const char *src, size_t len, uint8_t *dst, size_t dstlen);

#endif
