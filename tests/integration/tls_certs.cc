#include "tests/integration/tls_certs.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <utility>

#include <gtest/gtest.h>

namespace zmesh::testing {
namespace {

constexpr long kDay = 24 * 3600;

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

std::string OpenSslErrors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "(no OpenSSL error)" : out;
}

Key NewKey() { return Key(EVP_EC_gen("P-256")); }

// What a certificate is for.
struct Profile {
  std::string cn;
  bool is_ca = false;
  std::string san;              // "IP:127.0.0.1,DNS:localhost"; empty = none
  std::string eku;              // "serverAuth,clientAuth"; empty = none
  long not_before_s = -3600;    // relative to now
  long not_after_s = 2 * kDay;  // relative to now
};

bool AddExt(X509* x, X509V3_CTX* ctx, int nid, const std::string& value, std::string* error) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) {
    *error = "extension " + std::string(OBJ_nid2sn(nid)) + "=" + value + ": " + OpenSslErrors();
    return false;
  }
  const int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) *error = "X509_add_ext: " + OpenSslErrors();
  return ok == 1;
}

// A certificate for `key` issued by (issuer, issuer_key), or self-signed
// when issuer is null.
Cert MakeCert(EVP_PKEY* key, const Profile& p, X509* issuer, EVP_PKEY* issuer_key, std::string* error) {
  Cert x(X509_new());
  if (!x) {
    *error = "X509_new: " + OpenSslErrors();
    return nullptr;
  }
  X509_set_version(x.get(), 2);  // v3
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) {
    *error = "RAND_bytes: " + OpenSslErrors();
    return nullptr;
  }
  serial_bytes[0] &= 0x7f;  // positive
  BIGNUM* serial = BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr);
  const bool serial_ok = serial != nullptr && BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x.get())) != nullptr;
  BN_free(serial);
  if (!serial_ok) {
    *error = "serial: " + OpenSslErrors();
    return nullptr;
  }
  X509_gmtime_adj(X509_getm_notBefore(x.get()), p.not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), p.not_after_s);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("zmesh tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(p.cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  bool ok = AddExt(x.get(), &ctx, NID_basic_constraints, p.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE", error) &&
            AddExt(x.get(), &ctx, NID_key_usage, p.is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature",
                   error) &&
            AddExt(x.get(), &ctx, NID_subject_key_identifier, "hash", error) &&
            AddExt(x.get(), &ctx, NID_authority_key_identifier, "keyid:always", error);
  if (ok && !p.san.empty()) ok = AddExt(x.get(), &ctx, NID_subject_alt_name, p.san, error);
  if (ok && !p.eku.empty()) ok = AddExt(x.get(), &ctx, NID_ext_key_usage, p.eku, error);
  if (!ok) return nullptr;
  if (X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
    *error = "X509_sign: " + OpenSslErrors();
    return nullptr;
  }
  return x;
}

bool WritePem(const std::string& path, X509* cert, EVP_PKEY* key, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    *error = "cannot write " + path;
    return false;
  }
  if (key != nullptr) ::fchmod(fileno(f), 0600);
  const int ok =
      cert != nullptr ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  const bool closed = std::fclose(f) == 0;
  if (ok != 1 || !closed) {
    *error = "PEM write " + path + ": " + OpenSslErrors();
    return false;
  }
  return true;
}

}  // namespace

TestPki::~TestPki() {
  if (dir_.empty()) return;
  if (::testing::Test::HasFailure() || ::testing::UnitTest::GetInstance()->Failed()) {
    std::cerr << "TLS test certificates kept in " << dir_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

bool TestPki::Generate(std::string* error) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "zmesh-tls-pki.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    *error = "mkdtemp failed";
    return false;
  }
  dir_ = tmpl;

  // Issues a certificate for a fresh key and writes <name>.pem / <name>.key.
  auto issue = [&](const std::string& name, const Profile& p, X509* issuer, EVP_PKEY* issuer_key, CertKey* out,
                   Key* key_out, Cert* cert_out) {
    Key key = NewKey();
    if (!key) {
      *error = "EC key generation: " + OpenSslErrors();
      return false;
    }
    Cert cert = MakeCert(key.get(), p, issuer, issuer_key, error);
    if (!cert) return false;
    out->cert = dir_ + "/" + name + ".pem";
    out->key = dir_ + "/" + name + ".key";
    if (!WritePem(out->cert, cert.get(), nullptr, error) || !WritePem(out->key, nullptr, key.get(), error)) {
      return false;
    }
    if (key_out != nullptr) *key_out = std::move(key);
    if (cert_out != nullptr) *cert_out = std::move(cert);
    return true;
  };

  Profile ca_profile;
  ca_profile.cn = "zmesh test CA";
  ca_profile.is_ca = true;
  ca_profile.not_after_s = 3 * kDay;
  Profile node_profile;
  node_profile.cn = "zmesh-test-node";
  node_profile.san = "IP:127.0.0.1,DNS:localhost";
  node_profile.eku = "serverAuth,clientAuth";
  Profile client_profile;
  client_profile.cn = "zmesh-test-client";
  client_profile.eku = "clientAuth";

  Key ca_pkey, other_ca_pkey;
  Cert ca_cert, other_ca_cert;
  if (!issue("ca", ca_profile, nullptr, nullptr, &ca_key, &ca_pkey, &ca_cert)) return false;
  ca = ca_key.cert;
  if (!issue("node", node_profile, ca_cert.get(), ca_pkey.get(), &node, nullptr, nullptr)) return false;
  if (!issue("client", client_profile, ca_cert.get(), ca_pkey.get(), &client, nullptr, nullptr)) return false;

  Profile other_profile = ca_profile;
  other_profile.cn = "unrelated CA";
  CertKey other_ca_files;
  if (!issue("other-ca", other_profile, nullptr, nullptr, &other_ca_files, &other_ca_pkey, &other_ca_cert))
    return false;
  other_ca = other_ca_files.cert;
  Profile other_node_profile = node_profile;
  other_node_profile.cn = "zmesh-stranger-node";
  if (!issue("other-node", other_node_profile, other_ca_cert.get(), other_ca_pkey.get(), &other_node, nullptr,
             nullptr)) {
    return false;
  }

  Profile expired_profile = node_profile;
  expired_profile.cn = "zmesh-expired";
  expired_profile.not_before_s = -3 * kDay;
  expired_profile.not_after_s = -kDay;
  if (!issue("expired", expired_profile, ca_cert.get(), ca_pkey.get(), &expired, nullptr, nullptr)) return false;
  Profile future_profile = node_profile;
  future_profile.cn = "zmesh-not-yet-valid";
  future_profile.not_before_s = kDay;
  future_profile.not_after_s = 3 * kDay;
  if (!issue("not-yet-valid", future_profile, ca_cert.get(), ca_pkey.get(), &not_yet_valid, nullptr, nullptr)) {
    return false;
  }
  Profile wrong_name_profile = node_profile;
  wrong_name_profile.cn = "elsewhere.invalid";
  wrong_name_profile.san = "DNS:elsewhere.invalid";
  if (!issue("wrong-name", wrong_name_profile, ca_cert.get(), ca_pkey.get(), &wrong_name, nullptr, nullptr)) {
    return false;
  }

  // Peer links: a CA of their own, and certificates naming node ids.
  Profile peer_ca_profile = ca_profile;
  peer_ca_profile.cn = "zmesh test peer CA";
  CertKey peer_ca_files;
  Key peer_ca_pkey;
  Cert peer_ca_cert;
  if (!issue("peer-ca", peer_ca_profile, nullptr, nullptr, &peer_ca_files, &peer_ca_pkey, &peer_ca_cert)) return false;
  peer_ca = peer_ca_files.cert;
  for (const std::string id : {"n1", "n2", "n3", "n4", "n9"}) {
    Profile peer_profile = node_profile;
    peer_profile.cn = id;
    peer_profile.san = "DNS:" + id;
    if (!issue("peer-" + id, peer_profile, peer_ca_cert.get(), peer_ca_pkey.get(), &peers[id], nullptr, nullptr)) {
      return false;
    }
  }
  Profile client_as_peer_profile = node_profile;
  client_as_peer_profile.cn = "n3";
  client_as_peer_profile.san = "DNS:n3";
  return issue("client-as-peer", client_as_peer_profile, ca_cert.get(), ca_pkey.get(), &client_as_peer, nullptr,
               nullptr);
}

}  // namespace zmesh::testing
