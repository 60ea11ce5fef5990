/*
 * Unit tests for the protocol codec: framing, bounds-checked field reads,
 * startup parameter parsing and message building.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "proto.h"

static void frame_regular(void **state)
{
	const uint8_t msg[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, 'X'};
	struct pkt p;
	(void)state;
	assert_int_equal(proto_frame(msg, 4, &p), FRAME_NEED_MORE);
	assert_int_equal(proto_frame(msg, 5, &p), FRAME_OK);
	assert_false(pkt_complete(&p));
	assert_int_equal(p.len, 14);
	assert_int_equal(proto_frame(msg, sizeof(msg), &p), FRAME_OK);
	assert_true(pkt_complete(&p));
	assert_int_equal(p.type, 'Q');
	assert_int_equal(pkt_body_len(&p), 9);
	assert_string_equal((const char *)pkt_body(&p), "SELECT 1");
}

static void frame_bad_lengths(void **state)
{
	const uint8_t short_len[] = {'Q', 0, 0, 0, 3};
	const uint8_t huge_len[] = {'Q', 0xff, 0xff, 0xff, 0xff};
	struct pkt p;
	(void)state;
	assert_int_equal(proto_frame(short_len, 5, &p), FRAME_BAD);
	assert_int_equal(proto_frame(huge_len, 5, &p), FRAME_BAD);
	/* type 0 is no message type (found by fuzzing: it aliased startup framing) */
	const uint8_t type0[] = {0, 0, 0, 0, 4};
	assert_int_equal(proto_frame(type0, 5, &p), FRAME_BAD);
}

static void frame_startup(void **state)
{
	const uint8_t ssl[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	const uint8_t tiny[] = {0, 0, 0, 7, 0, 0, 0};
	const uint8_t big[] = {0, 1, 0, 0, 0, 3, 0, 0};
	struct pkt p;
	struct pkt_reader r;
	(void)state;
	assert_int_equal(proto_frame_startup(ssl, 3, &p), FRAME_NEED_MORE);
	assert_int_equal(proto_frame_startup(ssl, sizeof(ssl), &p), FRAME_OK);
	reader_init_pkt(&r, &p);
	assert_int_equal(read_u32(&r), PROTO_SSL);
	assert_int_equal(proto_frame_startup(tiny, sizeof(tiny), &p), FRAME_BAD);
	/* 65536 is over the startup packet limit */
	assert_int_equal(proto_frame_startup(big, sizeof(big), &p), FRAME_BAD);
}

static void reader_bounds(void **state)
{
	const uint8_t data[] = {1, 2, 3, 'a', 'b'};
	struct pkt_reader r;
	(void)state;
	reader_init(&r, data, sizeof(data));
	assert_int_equal(read_u16(&r), 0x0102);
	assert_false(r.bad);
	assert_null(read_string(&r)); /* "\3ab" has no terminator */
	assert_true(r.bad);
	assert_int_equal(read_u32(&r), 0); /* sticky */
	reader_init(&r, data, sizeof(data));
	assert_non_null(read_bytes(&r, 5));
	assert_null(read_bytes(&r, 1));
	assert_true(r.bad);
}

static void startup_params(void **state)
{
	const char good[] = "user\0bob\0database\0db\0\0";
	const char no_term[] = "user\0bob\0database\0db\0";
	const char odd[] = "user\0\0";
	struct startup_param sp[4];
	(void)state;
	assert_int_equal(proto_parse_startup_params((const uint8_t *)good, sizeof(good) - 1, sp, 4),
			 2);
	assert_string_equal(sp[0].key, "user");
	assert_string_equal(sp[1].value, "db");
	assert_int_equal(
		proto_parse_startup_params((const uint8_t *)no_term, sizeof(no_term) - 1, sp, 4),
		-1);
	/* "user" with an empty value, then the terminator is missing a key */
	assert_int_equal(proto_parse_startup_params((const uint8_t *)odd, sizeof(odd) - 1, sp, 4),
			 -1);
	/* too many parameters for the array */
	assert_int_equal(proto_parse_startup_params((const uint8_t *)good, sizeof(good) - 1, sp, 1),
			 -1);
	assert_int_equal(proto_parse_startup_params((const uint8_t *)"", 0, sp, 4), -1);
}

static void build_and_parse_error(void **state)
{
	struct pv_buf b;
	struct pkt p;
	struct error_fields ef;
	(void)state;
	buf_init(&b);
	assert_true(msg_error(&b, "FATAL", "08P01", "no such database: x"));
	assert_int_equal(proto_frame(b.data, b.len, &p), FRAME_OK);
	assert_true(pkt_complete(&p));
	assert_int_equal(p.len, b.len);
	assert_int_equal(p.type, 'E');
	assert_true(proto_parse_error(pkt_body(&p), pkt_body_len(&p), &ef));
	assert_string_equal(ef.severity, "FATAL");
	assert_string_equal(ef.sqlstate, "08P01");
	assert_string_equal(ef.message, "no such database: x");
	/* a truncated body is rejected */
	assert_false(proto_parse_error(pkt_body(&p), pkt_body_len(&p) - 3, &ef));
	buf_free(&b);
}

static void build_startup_and_cancel(void **state)
{
	const uint8_t key[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct pv_buf b;
	struct pkt p;
	struct pkt_reader r;
	(void)state;
	buf_init(&b);
	assert_true(msg_cancel_request(&b, key));
	assert_int_equal(b.len, 16);
	assert_int_equal(proto_frame_startup(b.data, b.len, &p), FRAME_OK);
	reader_init_pkt(&r, &p);
	assert_int_equal(read_u32(&r), PROTO_CANCEL);
	assert_memory_equal(read_bytes(&r, 8), key, 8);
	buf_free(&b);
}

static void build_several_messages(void **state)
{
	struct pv_buf b;
	struct pkt p;
	size_t pos = 0;
	const char types[] = {'R', 'S', 'K', 'Z'};
	const uint8_t key[8] = {0};
	(void)state;
	buf_init(&b);
	assert_true(msg_auth_request(&b, 0, NULL, 0));
	assert_true(msg_param_status(&b, "TimeZone", "UTC"));
	assert_true(msg_backend_key(&b, key));
	assert_true(msg_ready(&b, 'I'));
	for (size_t i = 0; i < sizeof(types); i++) {
		assert_int_equal(proto_frame(b.data + pos, b.len - pos, &p), FRAME_OK);
		assert_true(pkt_complete(&p));
		assert_int_equal(p.type, types[i]);
		pos += p.len;
	}
	assert_int_equal(pos, b.len);
	assert_int_equal(b.data[b.len - 1], 'I');
	buf_free(&b);
}

static void negotiate_version_lists_params(void **state)
{
	const char *un[] = {"_pq_.foo", "_pq_.bar"};
	struct pv_buf b;
	struct pkt p;
	struct pkt_reader r;
	(void)state;
	buf_init(&b);
	assert_true(msg_negotiate_version(&b, 0, un, 2));
	assert_int_equal(proto_frame(b.data, b.len, &p), FRAME_OK);
	reader_init_pkt(&r, &p);
	assert_int_equal(read_u32(&r), PROTO_V3);
	assert_int_equal(read_u32(&r), 2);
	assert_string_equal(read_string(&r), "_pq_.foo");
	assert_string_equal(read_string(&r), "_pq_.bar");
	assert_int_equal(reader_left(&r), 0);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(frame_regular),
		cmocka_unit_test(frame_bad_lengths),
		cmocka_unit_test(frame_startup),
		cmocka_unit_test(reader_bounds),
		cmocka_unit_test(startup_params),
		cmocka_unit_test(build_and_parse_error),
		cmocka_unit_test(build_startup_and_cancel),
		cmocka_unit_test(build_several_messages),
		cmocka_unit_test(negotiate_version_lists_params),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
