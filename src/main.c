/*
 * main.c - command line, process set-up and the event loop.
 */
#include "pv_build_config.h"
#include "log.h"

#include <event2/event.h>
#include <openssl/opensslv.h>
#include <ares.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"%s is a PostgreSQL connection pooler with governance for AI agents.\n\n"
		"Usage:\n  %s [OPTION]... CONFIG_FILE\n\n"
		"Options:\n"
		"  -d, --daemon         run in background (as a daemon)\n"
		"  -q, --quiet          run quietly\n"
		"  -v, --verbose        increase verbosity\n"
		"  -u, --user=USERNAME  assume identity of USERNAME\n"
		"  -V, --version        show version, then exit\n"
		"  -h, --help           show this help, then exit\n",
		"pgvigil", prog);
}

static void print_version(void)
{
	printf("pgvigil %s\n", PACKAGE_VERSION);
	printf("libevent %s\n", event_get_version());
	printf("adns: c-ares %s\n", ares_version(NULL));
	printf("tls: %s\n", OPENSSL_VERSION_TEXT);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"daemon", no_argument, NULL, 'd'},  {"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'}, {"user", required_argument, NULL, 'u'},
		{"version", no_argument, NULL, 'V'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "dqvu:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'V':
			print_version();
			return 0;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		case 'd':
		case 'q':
		case 'v':
		case 'u':
			break;
		default:
			usage(stderr, argv[0]);
			return 1;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr, argv[0]);
		return 1;
	}
	if (getuid() == 0)
		die("pgvigil should not run as root");
	die("pooling is not built yet");
}
