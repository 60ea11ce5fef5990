/*
 * fuzz_scram.c - libFuzzer target: arbitrary bytes as SCRAM messages.
 *
 * The input is split at the first 0xFF byte: the first part is fed to a
 * scram_server as client-first-message and the rest as client-final-message.
 * The second half is also fed to a scram_client as server-first/-final, and
 * the whole input to the base64 decoder and secret parser.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_server(const char *first, size_t flen, const char *final, size_t len)
{
	static const uint8_t salt[16] = "fuzzfuzzfuzzfuzz";
	static struct scram_secret sec;
	static int have_sec;
	struct scram_server sv;
	char err[128], *out = NULL;

	/* Derive once: PBKDF2 per input would make the fuzzer crawl. */
	if (!have_sec)
		have_sec = scram_secret_from_password("pw", salt, sizeof(salt), 1, &sec);
	scram_server_init(&sv, &sec, false);
	if (scram_server_handle_first(&sv, first, flen, &out, err, sizeof(err))) {
		free(out);
		out = NULL;
		if (scram_server_handle_final(&sv, final, len, &out, err, sizeof(err)))
			free(out);
	}
	scram_server_free(&sv);
}

static void fuzz_client(const char *msg, size_t len)
{
	static const uint8_t key[SCRAM_KEY_LEN] = {1, 2, 3};
	struct scram_client cl;
	char err[128], *out;

	/* Keys instead of a password: a hostile i= must not cost PBKDF2 time here. */
	scram_client_init_keys(&cl, key, key);
	scram_client_set_nonce_for_test(&cl, "abc");
	out = scram_client_first(&cl);
	free(out);
	out = scram_client_final(&cl, msg, len, err, sizeof(err));
	free(out);
	scram_client_verify_final(&cl, msg, len);
	scram_client_free(&cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const uint8_t *sep = memchr(data, 0xFF, size);
	size_t flen = sep ? (size_t)(sep - data) : size;
	size_t rest = sep ? size - flen - 1 : 0;
	uint8_t buf[256];
	char *text;

	fuzz_server(s, flen, s + size - rest, rest);
	fuzz_client(s + size - rest, rest);
	pv_b64_decode(s, size, buf, sizeof(buf));
	text = malloc(size + 1);
	if (text) {
		struct scram_secret sec;
		memcpy(text, data, size);
		text[size] = '\0';
		scram_parse_secret(text, &sec);
		free(text);
	}
	return 0;
}
