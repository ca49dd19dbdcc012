/*
 * TLS client sessions for loadgen (see loadgen_tls.h).
 *
 * Every session verifies the server's certificate chain against the run's CA
 * and its name, as a real client does: a benchmark client that skipped
 * verification would make handshakes look cheaper for the client only, and
 * the point of checking the client's CPU is that it stays below the server's.
 *
 * No session resumption unless asked (--resume 1): each new connection is a
 * full handshake, the expensive case a server must survive.  TLS 1.3 servers
 * send session tickets after the handshake anyway; they are read and dropped
 * with the echo.
 */
#include "loadgen_tls.h"

#include <stdio.h>
#include <string.h>

#ifdef LOADGEN_TLS
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_session {
    SSL *ssl;
};

static SSL_CTX *ctx;
static const char *name;
static SSL_SESSION *last_session; /* --resume: the ticket offered to the next connection */
static uint64_t handshakes, resumed, failures;
static char version[32] = "", cipher[80] = "", first_error[200] = "";

/* Keep the newest ticket (OpenSSL hands over a reference when we return 1). */
static int on_new_session(SSL *ssl, SSL_SESSION *session) {
    (void)ssl;
    if (last_session) SSL_SESSION_free(last_session);
    last_session = session;
    return 1;
}

int tls_init(const char *ca_file, const char *server_name, int resume) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load the CA file %s: ", ca_file);
        ERR_print_errors_fp(stderr);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read whole socket buffers, not a record header and then its body: half the read()s.
     * Whatever is read ahead is consumed by the caller, which reads until TLS_WANT_READ. */
    SSL_CTX_set_read_ahead(ctx, 1);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* A server that closes without close_notify ends the stream, as over plain TCP. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (resume) {
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    name = server_name;
    return 0;
}

struct tls_session *tls_start(int fd) {
    struct tls_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ssl = SSL_new(ctx);
    if (!s->ssl || SSL_set_fd(s->ssl, fd) != 1) {
        if (s->ssl) SSL_free(s->ssl);
        free(s);
        return NULL;
    }
    SSL_set_connect_state(s->ssl);
    /* An address is checked against the certificate's IP entries; a name against its DNS
     * ones, and sent as SNI (which may not carry an address). */
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name) != 1) {
        SSL_set_tlsext_host_name(s->ssl, name);
        SSL_set1_host(s->ssl, name);
    }
    if (last_session) SSL_set_session(s->ssl, last_session);
    return s;
}

/* Map an OpenSSL result to ours; the first real failure is kept for the report. */
static int outcome(struct tls_session *s, int rc) {
    int err = SSL_get_error(s->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) return TLS_WANT_READ;
    if (err == SSL_ERROR_WANT_WRITE) return TLS_WANT_WRITE;
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == EPIPE)) {
        ERR_clear_error();
        return TLS_RESET;
    }
    if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0; /* EOF without close_notify */
    failures++;
    if (!first_error[0]) {
        unsigned long code = ERR_peek_error();
        long verify = SSL_get_verify_result(s->ssl);
        if (verify != X509_V_OK)
            snprintf(first_error, sizeof first_error, "certificate: %s",
                     X509_verify_cert_error_string(verify));
        else if (code)
            ERR_error_string_n(code, first_error, sizeof first_error);
        else
            snprintf(first_error, sizeof first_error, "SSL error %d, errno %d", err, errno);
    }
    ERR_clear_error();
    return TLS_FAILED;
}

int tls_handshake(struct tls_session *s) {
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        handshakes++;
        resumed += SSL_session_reused(s->ssl) ? 1 : 0;
        if (!version[0]) {
            snprintf(version, sizeof version, "%s", SSL_get_version(s->ssl));
            snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(s->ssl));
        }
        return 1;
    }
    int r = outcome(s, rc);
    return r == 0 ? TLS_RESET : r; /* a close during the handshake is a failure to connect */
}

ssize_t tls_send(struct tls_session *s, const void *buf, size_t n) {
    size_t written = 0;
    int rc = SSL_write_ex(s->ssl, buf, n, &written);
    if (rc == 1) return (ssize_t)written;
    int r = outcome(s, rc);
    return r == 0 ? TLS_RESET : r;
}

ssize_t tls_recv(struct tls_session *s, void *buf, size_t n) {
    size_t got = 0;
    int rc = SSL_read_ex(s->ssl, buf, n, &got);
    if (rc == 1) return (ssize_t)got;
    return outcome(s, rc);
}

void tls_close(struct tls_session *s, int clean) {
    if (!s) return;
    if (clean) SSL_shutdown(s->ssl); /* sends close_notify; the answer is not awaited */
    ERR_clear_error();
    SSL_free(s->ssl);
    free(s);
}

void tls_report(char *out, size_t size) {
    char quoted[sizeof first_error];
    size_t j = 0;
    for (size_t i = 0; first_error[i] && j + 1 < sizeof quoted; i++)
        if (first_error[i] != '"' && first_error[i] != '\\') quoted[j++] = first_error[i];
    quoted[j] = '\0';
    snprintf(out, size,
             "{\"handshakes\":%" PRIu64 ",\"resumed\":%" PRIu64 ",\"failures\":%" PRIu64
             ",\"version\":\"%s\",\"cipher\":\"%s\",\"first_error\":\"%s\",\"library\":\"%s\"}",
             handshakes, resumed, failures, version, cipher, quoted,
             OpenSSL_version(OPENSSL_VERSION));
}

#else /* built without OpenSSL */

int tls_init(const char *ca_file, const char *server_name, int resume) {
    (void)ca_file, (void)server_name, (void)resume;
    fprintf(stderr, "loadgen: built without TLS: install OpenSSL's headers "
                    "(apt-get install -y libssl-dev) and run the suite again to rebuild\n");
    return -1;
}

struct tls_session *tls_start(int fd) {
    (void)fd;
    return NULL;
}

int tls_handshake(struct tls_session *s) {
    (void)s;
    return TLS_FAILED;
}

ssize_t tls_send(struct tls_session *s, const void *buf, size_t n) {
    (void)s, (void)buf, (void)n;
    return TLS_FAILED;
}

ssize_t tls_recv(struct tls_session *s, void *buf, size_t n) {
    (void)s, (void)buf, (void)n;
    return TLS_FAILED;
}

void tls_close(struct tls_session *s, int clean) { (void)s, (void)clean; }

void tls_report(char *out, size_t size) { snprintf(out, size, "null"); }

#endif
