/*
 * authfile.h - the auth_file (userlist.txt): `"user" "secret"` lines.
 *
 * Owns parsing (quoting rules: "" escapes a quote; lines starting with ';' are
 * comments; blank lines skipped; any other line not starting with '"' is a
 * "broken auth file" error that stops parsing) and the name -> secret map.
 * Secrets keep their stored form: plaintext, "md5<32 hex>" or
 * "SCRAM-SHA-256$<iter>:<salt b64>$<storedkey b64>:<serverkey b64>".
 */
#ifndef PV_AUTHFILE_H
#define PV_AUTHFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

enum secret_kind {
	SECRET_PLAIN,
	SECRET_MD5,
	SECRET_SCRAM,
};

struct auth_entry {
	char *name;
	char *secret;
	enum secret_kind kind;
};

struct authfile;

/* Parse a file. NULL + "path:line: reason" in err on failure. */
struct authfile *authfile_load(const char *path, char *err, size_t errlen);
/* Parse from memory (unit tests, fuzzing). `origin` names the source in errors. */
struct authfile *authfile_parse(const char *text, size_t len, const char *origin, char *err,
				size_t errlen);
void authfile_free(struct authfile *af);

/* NULL when the user is not listed. */
const struct auth_entry *authfile_find(const struct authfile *af, const char *name);
size_t authfile_count(const struct authfile *af);

/* Has the file changed since it was loaded (stat: dev, ino, mode, uid, gid, mtime, size)? */
bool authfile_changed(const struct authfile *af, const char *path);

/* Classify a stored secret. */
enum secret_kind secret_kind_of(const char *secret);

#endif
