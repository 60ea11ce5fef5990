/*
 * fuzz_copy.c - libFuzzer target for the COPY data codecs (src/mask_copy.c),
 * which parse CopyData rows a server sends before masking rewrites them.
 *
 * The first byte picks format, column count, wanted columns and whether a
 * header is pending; the rest is one CopyData payload. Checks: no crash, no
 * out-of-bounds read (ASan), and a failure only for allocation.
 * Build: see scripts/fuzz.sh (fuzz_copy entry).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask_copy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool mask_it(void *arg, int col, const uint8_t *v, size_t len, struct pv_buf *out,
                    bool *is_null)
{
	(void)arg;
	if (col == 2) {
		*is_null = true;
		return true;
	}
	return buf_append(out, "****", 4) && buf_append(out, v, len > 2 ? 2 : len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum copy_format formats[] = {COPY_TEXT, COPY_CSV, COPY_BINARY, COPY_CSV};
	bool want[8];
	struct copy_opts o = {0};
	struct copy_codec cc;
	struct pv_buf out;
	bool bad;

	if (size < 1)
		return 0;
	o.format = formats[data[0] & 3];
	o.delim = o.format == COPY_CSV ? ',' : '\t';
	o.quote = '"';
	o.escape = (data[0] & 0x80) ? '\\' : '"';
	o.null_str = o.format == COPY_CSV ? "" : "\\N";
	o.header = (data[0] & 0x40) != 0;
	for (int i = 0; i < 8; i++)
		want[i] = (data[0] >> (i % 4)) & 1;
	cc = (struct copy_codec){&o, 1 + ((data[0] >> 2) & 7), want, mask_it, NULL,
	                         o.format == COPY_BINARY || o.header};
	buf_init(&out);
	if (!copy_rewrite(&cc, data + 1, size - 1, &out, &bad))
		abort(); /* only allocation failure may fail, and the fuzzer has memory */
	buf_free(&out);
	return 0;
}
