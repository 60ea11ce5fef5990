/*
 * fuzz_mask_scan.c - libFuzzer target for the masking detectors and methods
 * (src/mask_value.c).
 *
 * The first input byte picks the masking method and keep_last, the rest is
 * the text. Runs mask_scan_text with every detector, mask_detect_first, and
 * the json/jsonb binary paths, checking the invariants callers rely on: an
 * unchanged scan copies the input exactly, a NULL-method scan never grows
 * the text, matches lie inside the input, jsonb stays version 1 + a JSON
 * string. Build: see scripts/fuzz.sh (fuzz_mask_scan entry).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask_value.h"

#define ALL_DETECTORS (MD_CREDIT_CARD | MD_US_SSN | MD_EMAIL | MD_JWT | MD_AWS_ACCESS_KEY)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_scan(const struct mask_spec *spec, const char *s, size_t n)
{
	struct pv_buf out;
	bool changed;

	buf_init(&out);
	if (!mask_scan_text(ALL_DETECTORS, spec, s, n, &out, &changed))
		abort(); /* only allocation failure may fail */
	if (!changed && (buf_pending(&out) != n || (n && memcmp(out.data + out.pos, s, n) != 0)))
		abort();
	if (spec->method == MM_NULL && buf_pending(&out) >= n && changed)
		abort();
	buf_free(&out);
}

static void check_detect(const char *s, size_t n)
{
	size_t st, ml;

	if (mask_detect_first(ALL_DETECTORS, s, n, &st, &ml) && (ml == 0 || st > n || ml > n - st))
		abort();
}

static void check_jsonb(const struct mask_spec *spec, const char *s, size_t n)
{
	struct pv_buf out;
	bool is_null;
	char *v = malloc(n + 1);

	if (!v)
		return;
	v[0] = 1; /* jsonb version */
	if (n)
		memcpy(v + 1, s, n);
	buf_init(&out);
	if (!mask_binary_value(spec, 3802, v, n + 1, &out, &is_null))
		abort();
	if (!is_null && (buf_pending(&out) < 3 || out.data[out.pos] != 1 ||
	                 out.data[out.pos + 1] != '"' || out.data[out.len - 1] != '"'))
		abort();
	buf_free(&out);
	free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mask_spec spec;
	const char *s = (const char *)data + 1;
	size_t n;

	if (size == 0)
		return 0;
	memset(&spec, 0, sizeof(spec));
	spec.method = (enum mask_method)(data[0] % 5);
	spec.keep_last = (data[0] >> 3) - 4; /* -4..27, negative included on purpose */
	spec.key_len = 3;
	memcpy(spec.key, "key", 3);
	n = size - 1;
	check_scan(&spec, s, n);
	check_detect(s, n);
	check_jsonb(&spec, s, n);
	return 0;
}
