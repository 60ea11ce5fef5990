/*
 * fuzz_config.c - libFuzzer target for the pgbouncer.ini parser.
 *
 * Feeds arbitrary bytes to config_parse_buffer() and, when they parse, walks
 * every SHOW CONFIG row and the lookup helpers so formatting code is covered
 * too. Build (from a configured build dir):
 *   clang -g -fsanitize=fuzzer,address,undefined -I../include -Iinclude \
 *     ../fuzz/fuzz_config.c ../src/config.c -o fuzz_config
 */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct config_row row;
	struct pv_config *cf;

	cf = config_parse_buffer((const char *)data, size, "fuzz.ini", err, sizeof(err));
	if (!cf)
		return 0;
	for (size_t i = 0; config_row_at(cf, i, &row); i++)
		(void)config_list_contains(row.value, "pgbouncer");
	(void)config_find_db(cf, "*");
	(void)config_find_user(cf, "postgres");
	config_free(cf);
	return 0;
}
