#pragma once

// Certificates for the TLS integration tests, generated at test time with
// OpenSSL's C API (no openssl CLI needed) into a fresh temporary directory:
//
//   ca            the test CA (self-signed, CA:TRUE)
//   node          signed by ca; SAN IP:127.0.0.1, DNS:localhost;
//                 serverAuth + clientAuth (a node is both ends of peer links)
//   client        signed by ca; CN zmesh-test-client; clientAuth
//   other_ca      an unrelated CA
//   other_node    signed by other_ca; the same names and usages as node
//   expired       signed by ca; the same names and usages as node, but its
//                 validity ended a day ago
//   not_yet_valid signed by ca; the same, valid only from tomorrow
//   wrong_name    signed by ca; SAN DNS:elsewhere.invalid only (does not
//                 name 127.0.0.1)
//   peer_ca       the CA of peer links, apart from the clients' ca
//   peers[id]     signed by peer_ca for node ids n1..n4 and n9: SAN DNS:<id>,
//                 CN <id>; serverAuth + clientAuth
//   client_as_peer signed by ca (the clients' CA), naming node n3 like a peer
//                 certificate would
//
// Keys are EC P-256. The directory is removed by the destructor unless the
// current test failed (then it is kept and named on stderr).
//
// Not thread safe.

#include <map>
#include <string>

namespace zmesh::testing {

struct CertKey {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key (mode 0600)
};

class TestPki {
 public:
  TestPki() = default;
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  // Creates the directory and every file; false with the reason on failure.
  bool Generate(std::string* error);

  const std::string& dir() const { return dir_; }

  std::string ca;  // PEM file of the test CA certificate
  CertKey ca_key;  // the CA's own certificate and key
  CertKey node;
  CertKey client;
  std::string other_ca;  // PEM file of the unrelated CA
  CertKey other_node;
  CertKey expired;
  CertKey not_yet_valid;
  CertKey wrong_name;
  std::string peer_ca;  // PEM file of the peer CA
  std::map<std::string, CertKey> peers;
  CertKey client_as_peer;

 private:
  std::string dir_;
};

}  // namespace zmesh::testing
