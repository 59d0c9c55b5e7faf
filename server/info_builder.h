#pragma once

// Builds the INFO line sent to each client: nats-server's fields, in its
// order, with omitempty semantics, plus connect_urls (the client URLs of all
// live mesh nodes) and ldm (lame duck) when set.
//
// Threading: all methods are safe from any thread; the mutable parts
// (connect_urls, lame duck) are swapped under a mutex and read as an
// immutable snapshot.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace zmesh::server {

struct InfoStatic {
  std::string server_id;
  std::string server_name;
  std::string version;        // the NATS protocol level we match
  std::string zmesh_version;
  std::string host;
  int port = 0;
  bool auth_required = false;
  bool tls_required = false;
  bool tls_verify = false;  // client certificates required
  int64_t max_payload = 0;
};

class InfoBuilder {
 public:
  explicit InfoBuilder(InfoStatic fields);

  // "INFO {...} \r\n" for one client.
  std::string ForClient(uint64_t client_id, const std::string& client_ip) const;
  // The line without client fields, re-sent to every client when membership
  // or lame duck mode changes.
  std::string Broadcast() const;

  void set_connect_urls(std::vector<std::string> urls);
  std::vector<std::string> connect_urls() const;
  void set_lame_duck(bool ldm);
  void set_port(int port);

 private:
  struct Snapshot {
    std::string head;  // "INFO {" ... up to and including max_payload
    std::string tail;  // ,"connect_urls":[...],"ldm":true
  };
  void Rebuild();  // requires mu_

  mutable std::mutex mu_;
  InfoStatic fields_;
  std::vector<std::string> connect_urls_;
  bool lame_duck_ = false;
  std::shared_ptr<const Snapshot> snapshot_;
};

}  // namespace zmesh::server
