// Peer link keys and TLS (SPEC §3): the secret file, the HKDF-derived PSKs,
// and real TLS 1.3 handshakes between two in-process sessions over a
// socketpair: same secret connects, another secret or none cannot, a ring
// with two secrets accepts both (rotation).
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "auth/peer_keys.h"
#include "auth/peer_tls.h"

namespace zmesh::auth {
namespace {

constexpr const char* kSecretA = "cluster-secret-aaaaaaaaaaaaaaaa";
constexpr const char* kSecretB = "cluster-secret-bbbbbbbbbbbbbbbb";

std::shared_ptr<const PeerKeyring> Ring(std::vector<std::string> secrets) {
  auto ring = PeerKeyring::FromSecrets(secrets);
  EXPECT_TRUE(ring.ok()) << ring.status();
  return ring.ok() ? *ring : nullptr;
}

TEST(PeerKeysTest, SecretFileHoldsOneOrTwoSecrets) {
  auto one = PeerKeyring::ParseSecretFile("  s3cret-0123456789abcdef \r\n\n");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, std::vector<std::string>{"s3cret-0123456789abcdef"});
  auto two = PeerKeyring::ParseSecretFile("# rotation in progress\nnew-0123456789abcdef\n\nold-0123456789abcdef\n");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(*two, (std::vector<std::string>{"new-0123456789abcdef", "old-0123456789abcdef"}));
  EXPECT_FALSE(PeerKeyring::ParseSecretFile("\n# nothing\n\n").ok());
  EXPECT_FALSE(PeerKeyring::ParseSecretFile("a-0123456789abcdef\nb-0123456789abcdef\nc-0123456789abcdef\n").ok());
  EXPECT_FALSE(PeerKeyring::FromSecrets({"short"}).ok()) << "a secret shorter than 16 characters";
}

TEST(PeerKeysTest, KeysAreDerivedNotSent) {
  auto a = Ring({kSecretA});
  auto a2 = Ring({kSecretA});
  auto b = Ring({kSecretB});
  ASSERT_TRUE(a && a2 && b);
  EXPECT_EQ(a->current().key, a2->current().key) << "deterministic: every node derives the same key";
  EXPECT_EQ(a->current().identity, a2->current().identity);
  EXPECT_NE(a->current().key, b->current().key);
  EXPECT_NE(a->current().identity, b->current().identity);
  EXPECT_EQ(a->current().key.size(), 32u);
  // The identity crosses the wire in clear: it names the key, it is not the key
  // nor the secret.
  EXPECT_EQ(a->current().identity.find(kSecretA), std::string::npos);
  EXPECT_EQ(a->current().identity.rfind("zmesh-peer-v2:", 0), 0u);
  EXPECT_NE(DeriveFromSecret(kSecretA, "tls13 external psk", 32), a->current().identity);
  auto both = Ring({kSecretB, kSecretA});
  ASSERT_TRUE(both);
  EXPECT_EQ(both->current().identity, b->current().identity) << "the first secret is the one to dial with";
  EXPECT_NE(both->Find(a->current().identity), nullptr);
  EXPECT_NE(both->Find(b->current().identity), nullptr);
  EXPECT_EQ(a->Find(b->current().identity), nullptr);
}

// Two TLS sessions, driven in turn over a non-blocking socketpair.
class Handshake {
 public:
  Handshake(SSL_CTX* client_ctx, const PeerKeyring* client_ring, SSL_CTX* server_ctx, const PeerKeyring* server_ring) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    fds_[0] = fds[0];
    fds_[1] = fds[1];
    client_ = SSL_new(client_ctx);
    server_ = SSL_new(server_ctx);
    SSL_set_fd(client_, fds[0]);
    SSL_set_fd(server_, fds[1]);
    if (client_ring) SSL_set_app_data(client_, const_cast<PeerKeyring*>(client_ring));
    if (server_ring) SSL_set_app_data(server_, const_cast<PeerKeyring*>(server_ring));
    SSL_set_connect_state(client_);
    SSL_set_accept_state(server_);
  }
  ~Handshake() {
    SSL_free(client_);
    SSL_free(server_);
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  // True when both sides completed; false as soon as either fails.
  bool Run() {
    bool client_done = false, server_done = false;
    for (int round = 0; round < 100 && !(client_done && server_done); ++round) {
      if (!client_done && !Step(client_, &client_done)) return false;
      if (!server_done && !Step(server_, &server_done)) return false;
    }
    return client_done && server_done;
  }
  // After Run(): a message each way arrives intact.
  bool Exchange() {
    const std::string ping = "ping over psk", pong = "pong";
    if (SSL_write(client_, ping.data(), static_cast<int>(ping.size())) != static_cast<int>(ping.size())) return false;
    char buf[64];
    const int n = SSL_read(server_, buf, sizeof buf);
    if (n <= 0 || std::string(buf, static_cast<size_t>(n)) != ping) return false;
    if (SSL_write(server_, pong.data(), static_cast<int>(pong.size())) != static_cast<int>(pong.size())) return false;
    const int m = SSL_read(client_, buf, sizeof buf);
    return m > 0 && std::string(buf, static_cast<size_t>(m)) == pong;
  }
  SSL* server() const { return server_; }

 private:
  static bool Step(SSL* ssl, bool* done) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl);
    if (r == 1) {
      *done = true;
      return true;
    }
    const int e = SSL_get_error(ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
  }
  int fds_[2];
  SSL* client_;
  SSL* server_;
};

TEST(PeerTlsTest, SameSecretConnectsWithTls13AndForwardSecrecy) {
  auto tls = PeerTlsContexts::CreatePsk();
  ASSERT_TRUE(tls.ok()) << tls.status();
  auto a = Ring({kSecretA});
  Handshake h((*tls)->client(), a.get(), (*tls)->server(), a.get());
  ASSERT_TRUE(h.Run());
  EXPECT_EQ(SSL_version(h.server()), TLS1_3_VERSION);
  EXPECT_TRUE(SSL_session_reused(h.server())) << "the external PSK was used";
  EXPECT_EQ(SSL_get0_peer_certificate(h.server()), nullptr) << "no certificates in PSK mode";
  EXPECT_TRUE(h.Exchange());
}

TEST(PeerTlsTest, AnotherSecretCannotFinishTheHandshake) {
  auto tls = PeerTlsContexts::CreatePsk();
  ASSERT_TRUE(tls.ok()) << tls.status();
  auto a = Ring({kSecretA});
  auto b = Ring({kSecretB});
  Handshake wrong((*tls)->client(), b.get(), (*tls)->server(), a.get());
  EXPECT_FALSE(wrong.Run()) << "a dialler with another secret got in";
  Handshake wrong_acceptor((*tls)->client(), a.get(), (*tls)->server(), b.get());
  EXPECT_FALSE(wrong_acceptor.Run()) << "an acceptor with another secret was accepted";
}

TEST(PeerTlsTest, ATlsClientWithoutTheSecretCannotConnect) {
  auto tls = PeerTlsContexts::CreatePsk();
  ASSERT_TRUE(tls.ok()) << tls.status();
  auto a = Ring({kSecretA});
  SSL_CTX* plain = SSL_CTX_new(TLS_client_method());  // an ordinary TLS client, no PSK
  Handshake h(plain, nullptr, (*tls)->server(), a.get());
  EXPECT_FALSE(h.Run());
  SSL_CTX_free(plain);
}

TEST(PeerTlsTest, ARingWithTwoSecretsAcceptsBothDuringRotation) {
  auto tls = PeerTlsContexts::CreatePsk();
  ASSERT_TRUE(tls.ok()) << tls.status();
  auto old_only = Ring({kSecretA});
  auto new_only = Ring({kSecretB});
  auto rotating = Ring({kSecretB, kSecretA});  // dials with the new one, accepts both
  for (const PeerKeyring* dialler : {old_only.get(), new_only.get(), rotating.get()}) {
    Handshake h((*tls)->client(), dialler, (*tls)->server(), rotating.get());
    EXPECT_TRUE(h.Run() && h.Exchange()) << "dialler with " << dialler->current().identity;
  }
  // A rotated node dials with the new secret: an old-only acceptor refuses it,
  // which is why every node accepts both before any dials with the new one.
  Handshake h((*tls)->client(), rotating.get(), (*tls)->server(), old_only.get());
  EXPECT_FALSE(h.Run());
}

TEST(PeerTlsTest, CertificateModeNeedsAPeerCa) {
  EXPECT_FALSE(PeerTlsContexts::CreateCertificates("c.pem", "k.pem", "").ok());
  EXPECT_FALSE(PeerTlsContexts::CreateCertificates("", "", "ca.pem").ok());
}

}  // namespace
}  // namespace zmesh::auth
