/* test_auth.c -- auth.c through the real libjwt and OpenSSL: loading
 * keys (and refusing keys we cannot use), HS256 round trips, every
 * refusal (bad signature, expired, not yet valid, "none", an algorithm
 * with no key, algorithm confusion with the public key as an HMAC
 * secret), RS256 and ES256 with keys made here, issuer and audience.
 * The test tokens are signed with libjwt too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "token.h"

#define SECRET "0123456789abcdef0123456789abcdef"

/* ------------------------------------------------------------- helpers */

struct keypair {
    char *priv;     /* PEM, PKCS#8 */
    char *pub;      /* PEM, SubjectPublicKeyInfo */
};

static char *
bio_text(BIO *b)
{
    char *data, *out;
    long n = BIO_get_mem_data(b, &data);

    assert_true(n > 0);
    assert_non_null(out = calloc(1, (size_t)n + 1));
    memcpy(out, data, (size_t)n);
    return out;
}

/* A fresh key: "RSA" with bits, or "EC" on curve, or "ED25519". */
static void
keygen(struct keypair *k, const char *type, size_t bits, const char *curve)
{
    EVP_PKEY *p;
    BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());

    if (strcmp(type, "RSA") == 0)
        p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
    else if (strcmp(type, "EC") == 0)
        p = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    else
        p = EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(p);
    assert_int_equal(PEM_write_bio_PrivateKey(a, p, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(PEM_write_bio_PUBKEY(b, p), 1);
    k->priv = bio_text(a);
    k->pub = bio_text(b);
    BIO_free(a);
    BIO_free(b);
    EVP_PKEY_free(p);
}

static void
keyfree(struct keypair *k)
{
    free(k->priv);
    free(k->pub);
}

/* Writes text to a new temporary file; its path goes in path. */
static void
temp_file(char *path, size_t cap, const char *text)
{
    int fd;

    snprintf(path, cap, "/tmp/ssegate-test-auth-XXXXXX");
    assert_true((fd = mkstemp(path)) >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static struct auth *
make_auth(const char *secret, const char *pubkey_pem, const char *iss, const char *aud)
{
    struct config cfg;
    struct auth *a = NULL;
    char err[256] = "", path[64] = "";

    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.auth_secret, sizeof(cfg.auth_secret), "%s", secret ? secret : "");
    if (pubkey_pem != NULL) {
        temp_file(path, sizeof(path), pubkey_pem);
        snprintf(cfg.auth_public_key_file, sizeof(cfg.auth_public_key_file), "%s", path);
    }
    snprintf(cfg.auth_issuer, sizeof(cfg.auth_issuer), "%s", iss ? iss : "");
    snprintf(cfg.auth_audience, sizeof(cfg.auth_audience), "%s", aud ? aud : "");
    cfg.auth_token_ttl_secs = 3600;
    if (auth_new(&cfg, &a, err, sizeof(err)) != 0)
        fail_msg("auth_new: %s", err);
    if (path[0] != '\0')
        unlink(path);
    assert_non_null(a);
    return a;
}

/* A token signed by libjwt with key under alg, claims from JSON. */
static char *
sign(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt;
    char *tok;

    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key,
                                 key ? (int)strlen(key) : 0), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_non_null(tok = jwt_encode_str(jwt));
    jwt_free(jwt);
    return tok;
}

static int64_t
now_ms(void)
{
    return (int64_t)time(NULL) * 1000;
}

static enum auth_result
check(const struct auth *a, const char *tok, const char *user, const char **why)
{
    struct token_claims c;

    return auth_check_user(a, tok, tok ? strlen(tok) : 0, user, now_ms(), &c, why);
}

/* Expects AUTH_INVALID for want's reason. */
static void
expect_invalid(const struct auth *a, const char *tok, const char *want)
{
    const char *why = NULL;

    assert_int_equal(check(a, tok, "42", &why), AUTH_INVALID);
    assert_string_equal(why, want);
}

/* --------------------------------------------------------------- tests */

static void
test_open_mode(void **state)
{
    struct config cfg;
    struct auth *a = (struct auth *)1;
    char err[64];

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), 0);
    assert_null(a);
    assert_false(auth_can_sign(NULL));
    assert_null(auth_sign(NULL, "1", now_ms(), 60, 0, NULL, 0));
    auth_free(NULL);
}

static void
test_hs256_round_trip(void **state)
{
    struct auth *a = make_auth(SECRET, NULL, NULL, NULL);
    struct token_claims c;
    const char *why;
    int64_t now = now_ms();
    char *tok, *fire;

    (void)state;
    assert_true(auth_can_sign(a));
    assert_string_equal(auth_algs(a), "HS256");
    assert_non_null(tok = auth_sign(a, "42", now, 60, 0, NULL, 0));
    assert_int_equal(auth_check_user(a, tok, strlen(tok), "42", now, &c, &why), AUTH_OK);
    assert_string_equal(c.sub, "42");
    assert_true(c.has_exp);
    assert_int_equal(c.exp_ms, (now / 1000 + 60) * 1000);
    assert_false(c.firehose);
    assert_int_equal(auth_check_user(a, tok, strlen(tok), "43", now, &c, &why), AUTH_FORBIDDEN);
    assert_string_equal(why, "the token is for another user");
    assert_string_equal(c.sub, "42");       /* valid, so its claims are known */
    assert_int_equal(auth_check_user(a, tok, strlen(tok), NULL, now, &c, &why), AUTH_FORBIDDEN);
    assert_string_equal(why, "the token does not open the firehose");
    assert_non_null(fire = auth_sign(a, "ops", now, 60, 1, NULL, 0));
    assert_int_equal(auth_check_user(a, fire, strlen(fire), "", now, &c, &why), AUTH_OK);
    assert_true(c.firehose);
    assert_int_equal(auth_check_user(a, fire, strlen(fire), "43", now, &c, &why), AUTH_OK);
    /* The token may sit inside a longer string (a header): len bounds it. */
    {
        char buf[1024];

        snprintf(buf, sizeof(buf), "%s  trailing", tok);
        assert_int_equal(auth_check_user(a, buf, strlen(tok), "42", now, &c, &why), AUTH_OK);
    }
    /* At exp it is expired; a second before, not. */
    assert_int_equal(auth_check_user(a, tok, strlen(tok), "42", c.exp_ms - 1, &c, &why), AUTH_OK);
    assert_int_equal(auth_check_user(a, tok, strlen(tok), "42", (now / 1000 + 60) * 1000, &c,
                                     &why), AUTH_INVALID);
    assert_string_equal(why, "the token has expired");
    free(tok);
    free(fire);
    auth_free(a);
}

static void
test_hs256_refusals(void **state)
{
    struct auth *a = make_auth(SECRET, NULL, NULL, NULL);
    struct auth *other = make_auth("another secret, also 32 bytes long", NULL, NULL, NULL);
    const char *why;
    char claims[128], big[TOKEN_MAX + 2];
    char *tok, *t;

    (void)state;
    assert_int_equal(check(a, NULL, "42", &why), AUTH_NO_TOKEN);
    /* A signature changed in its middle (the last character carries
     * padding bits, which the form check would catch first). */
    tok = auth_sign(a, "42", now_ms(), 60, 0, NULL, 0);
    t = strrchr(tok, '.') + 10;
    *t = *t == 'A' ? 'B' : 'A';
    expect_invalid(a, tok, "the token's signature does not verify");
    free(tok);
    tok = auth_sign(other, "42", now_ms(), 60, 0, NULL, 0);
    expect_invalid(a, tok, "the token's signature does not verify");
    free(tok);
    tok = auth_sign(a, "42", now_ms() - 7200 * 1000, 3600, 0, NULL, 0);
    expect_invalid(a, tok, "the token has expired");
    free(tok);
    snprintf(claims, sizeof(claims), "{\"sub\":\"42\",\"nbf\":%lld}",
             (long long)(now_ms() / 1000 + 600));
    tok = sign(JWT_ALG_HS256, SECRET, claims);
    expect_invalid(a, tok, "the token is not valid yet (nbf)");
    free(tok);
    tok = sign(JWT_ALG_NONE, NULL, "{\"sub\":\"42\"}");
    expect_invalid(a, tok, "unsigned tokens (alg none) are refused");
    free(tok);
    tok = sign(JWT_ALG_HS512, SECRET, "{\"sub\":\"42\"}");
    expect_invalid(a, tok, "the token's alg is not HS256, RS256 or ES256");
    free(tok);
    tok = sign(JWT_ALG_HS256, SECRET, "{\"user\":\"42\"}");
    expect_invalid(a, tok, "the token has no sub");
    free(tok);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    expect_invalid(a, big, "the token is longer than 4096 bytes");
    auth_free(a);
    auth_free(other);
}

static void
test_rs256(void **state)
{
    struct keypair rsa, ec;
    struct auth *a;
    const char *why;
    char *tok, *forged, *dot1, *dot2, payload[64], swapped[4096];

    (void)state;
    keygen(&rsa, "RSA", 2048, NULL);
    keygen(&ec, "EC", 0, "prime256v1");
    a = make_auth(NULL, rsa.pub, NULL, NULL);
    assert_false(auth_can_sign(a));
    assert_null(auth_sign(a, "42", now_ms(), 60, 0, NULL, 0));
    assert_string_equal(auth_algs(a), "RS256");
    tok = sign(JWT_ALG_RS256, rsa.priv, "{\"sub\":\"42\",\"firehose\":true}");
    assert_int_equal(check(a, tok, "42", &why), AUTH_OK);
    assert_int_equal(check(a, tok, NULL, &why), AUTH_OK);
    /* Another payload under the same signature. */
    dot1 = strchr(tok, '.');
    dot2 = strchr(dot1 + 1, '.');
    snprintf(payload, sizeof(payload), "eyJzdWIiOiI0MyJ9");        /* {"sub":"43"} */
    snprintf(swapped, sizeof(swapped), "%.*s.%s%s", (int)(dot1 - tok), tok, payload, dot2);
    expect_invalid(a, swapped, "the token's signature does not verify");
    /* Algorithm confusion: HS256 keyed with the public key's PEM, which
     * anyone has. Refused before libjwt sees it. */
    forged = sign(JWT_ALG_HS256, rsa.pub, "{\"sub\":\"42\"}");
    expect_invalid(a, forged, "HS256 tokens are not accepted here");
    free(forged);
    /* An ES256 token: no EC key here. */
    forged = sign(JWT_ALG_ES256, ec.priv, "{\"sub\":\"42\"}");
    expect_invalid(a, forged, "ES256 tokens are not accepted here");
    free(forged);
    free(tok);
    auth_free(a);
    keyfree(&rsa);
    keyfree(&ec);
}

static void
test_es256(void **state)
{
    struct keypair ec, ec2;
    struct auth *a, *both;
    const char *why;
    char *tok, *hs;

    (void)state;
    keygen(&ec, "EC", 0, "prime256v1");
    keygen(&ec2, "EC", 0, "prime256v1");
    a = make_auth(NULL, ec.pub, NULL, NULL);
    assert_string_equal(auth_algs(a), "ES256");
    tok = sign(JWT_ALG_ES256, ec.priv, "{\"sub\":\"42\",\"exp\":4102444800}");
    assert_int_equal(check(a, tok, "42", &why), AUTH_OK);
    assert_int_equal(check(a, tok, "7", &why), AUTH_FORBIDDEN);
    free(tok);
    tok = sign(JWT_ALG_ES256, ec2.priv, "{\"sub\":\"42\"}");
    expect_invalid(a, tok, "the token's signature does not verify");
    free(tok);
    tok = sign(JWT_ALG_HS256, ec.pub, "{\"sub\":\"42\"}");
    expect_invalid(a, tok, "HS256 tokens are not accepted here");
    free(tok);
    /* Both keys: each algorithm with its own. */
    both = make_auth(SECRET, ec.pub, NULL, NULL);
    assert_string_equal(auth_algs(both), "HS256, ES256");
    tok = sign(JWT_ALG_ES256, ec.priv, "{\"sub\":\"42\"}");
    hs = sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"42\"}");
    assert_int_equal(check(both, tok, "42", &why), AUTH_OK);
    assert_int_equal(check(both, hs, "42", &why), AUTH_OK);
    free(hs);
    hs = sign(JWT_ALG_HS256, ec.pub, "{\"sub\":\"42\"}");
    expect_invalid(both, hs, "the token's signature does not verify");
    free(hs);
    free(tok);
    auth_free(a);
    auth_free(both);
    keyfree(&ec);
    keyfree(&ec2);
}

/* Expects auth_new to refuse the key file holding text, with
 * "AUTH_PUBLIC_KEY_FILE: <its path>" and then rest. */
static void
expect_key_error(const char *text, const char *rest)
{
    struct config cfg;
    struct auth *a = NULL;
    char err[256], want[256], path[64];

    memset(&cfg, 0, sizeof(cfg));
    temp_file(path, sizeof(path), text);
    snprintf(cfg.auth_public_key_file, sizeof(cfg.auth_public_key_file), "%s", path);
    assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), -1);
    assert_null(a);
    snprintf(want, sizeof(want), "AUTH_PUBLIC_KEY_FILE: %s%s", path, rest);
    assert_string_equal(err, want);
    unlink(path);
}

static void
test_key_file_errors(void **state)
{
    struct config cfg;
    struct auth *a = NULL;
    struct keypair small, p384, ed, ok;
    char err[256];

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.auth_public_key_file, sizeof(cfg.auth_public_key_file),
             "/nonexistent/key.pem");
    assert_int_equal(auth_new(&cfg, &a, err, sizeof(err)), -1);
    assert_string_equal(err, "AUTH_PUBLIC_KEY_FILE: cannot open /nonexistent/key.pem: "
                             "No such file or directory");
    keygen(&small, "RSA", 1024, NULL);
    keygen(&p384, "EC", 0, "secp384r1");
    keygen(&ed, "ED25519", 0, NULL);
    keygen(&ok, "EC", 0, "prime256v1");
    expect_key_error("not a key\n", " holds no PEM public key "
                     "(-----BEGIN PUBLIC KEY-----; from a certificate: "
                     "openssl x509 -pubkey -noout -in CERT)");
    /* A private key is not what the gateway should hold. */
    expect_key_error(ok.priv, " holds no PEM public key "
                     "(-----BEGIN PUBLIC KEY-----; from a certificate: "
                     "openssl x509 -pubkey -noout -in CERT)");
    expect_key_error(small.pub, ": an RSA key of 1024 bits; "
                     "RS256 needs 2048 or more");
    expect_key_error(p384.pub, ": an EC key on secp384r1; "
                     "ES256 needs P-256 (prime256v1)");
    expect_key_error(ed.pub, ": neither an RSA nor an EC key "
                     "(RS256 and ES256 tokens are accepted)");
    /* Text around the key (a comment, another block) is fine. */
    {
        char text[2048];
        struct auth *fine;

        snprintf(text, sizeof(text), "# the IdP's signing key\n%s", ok.pub);
        fine = make_auth(NULL, text, NULL, NULL);
        assert_string_equal(auth_algs(fine), "ES256");
        auth_free(fine);
    }
    keyfree(&small);
    keyfree(&p384);
    keyfree(&ed);
    keyfree(&ok);
}

static void
test_issuer_audience(void **state)
{
    struct auth *a = make_auth(SECRET, NULL, "https://app.example", "ssegate");
    struct auth *plain = make_auth(SECRET, NULL, NULL, NULL);
    const char *why;
    char *tok;

    (void)state;
    /* What we sign carries iss and aud, so we and our peers accept it. */
    tok = auth_sign(a, "42", now_ms(), 60, 0, NULL, 0);
    assert_int_equal(check(a, tok, "42", &why), AUTH_OK);
    assert_int_equal(check(plain, tok, "42", &why), AUTH_OK);
    free(tok);
    tok = auth_sign(plain, "42", now_ms(), 60, 0, NULL, 0);
    expect_invalid(a, tok, "the token is not from the expected issuer");
    free(tok);
    tok = sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"42\",\"iss\":\"https://app.example\","
                                      "\"aud\":[\"other\",\"ssegate\"]}");
    assert_int_equal(check(a, tok, "42", &why), AUTH_OK);
    free(tok);
    tok = sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"42\",\"iss\":\"https://app.example\","
                                      "\"aud\":\"other\"}");
    expect_invalid(a, tok, "the token is not for this audience");
    free(tok);
    auth_free(a);
    auth_free(plain);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_mode),
        cmocka_unit_test(test_hs256_round_trip),
        cmocka_unit_test(test_hs256_refusals),
        cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_key_file_errors),
        cmocka_unit_test(test_issuer_audience),
    };

    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
