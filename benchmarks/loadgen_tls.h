/*
 * The TLS side of loadgen: client sessions over non-blocking sockets, with OpenSSL.
 *
 * Built with -DLOADGEN_TLS (and -lssl -lcrypto) when OpenSSL's headers are
 * installed; otherwise tls_init() fails and says what to install, and
 * loadgen still builds for the plain TCP and UDP modes.
 */
#ifndef LOADGEN_TLS_H
#define LOADGEN_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Results of the calls below that are not byte counts. */
#define TLS_WANT_READ (-2)  /* call again when the socket is readable */
#define TLS_WANT_WRITE (-3) /* call again when the socket is writable */
#define TLS_FAILED (-4)     /* protocol or verification error: see tls_report() */
#define TLS_RESET (-5)      /* the peer reset the connection */

struct tls_session;

/* Client settings for every session: trust only ca_file, check the server's
 * certificate against server_name (also sent as SNI), and offer the last
 * session ticket again when resume is set.  0 on success; else -1 with the
 * reason on stderr. */
int tls_init(const char *ca_file, const char *server_name, int resume);

/* A client session on connected socket fd (not yet handshaken), or NULL. */
struct tls_session *tls_start(int fd);

/* Drive the handshake: 1 when it is complete, or TLS_WANT_* / TLS_FAILED / TLS_RESET. */
int tls_handshake(struct tls_session *s);

/* Bytes written (> 0), or TLS_WANT_* / TLS_FAILED / TLS_RESET. */
ssize_t tls_send(struct tls_session *s, const void *buf, size_t n);

/* Bytes read (> 0), 0 at the peer's close, or TLS_WANT_* / TLS_FAILED / TLS_RESET. */
ssize_t tls_recv(struct tls_session *s, void *buf, size_t n);

/* Free the session; with clean set, first send close_notify (without waiting
 * for the peer's), so the server sees an orderly end rather than a truncation. */
void tls_close(struct tls_session *s, int clean);

/* The "tls" object of the JSON result line (without a trailing comma). */
void tls_report(char *out, size_t size);

#endif
