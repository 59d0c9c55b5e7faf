#pragma once

// Keeps the INFO line sent to each client (proto/info.h encodes it): the
// node's fixed fields, plus connect_urls (the client URLs of all live mesh
// nodes) and ldm (lame duck) when set.
//
// Threading: all methods are safe from any thread; the mutable parts
// (connect_urls, lame duck, port) are swapped under a mutex and read as an
// immutable snapshot.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proto/info.h"

namespace zmesh::server {

// The node's own INFO fields: who it is and what it requires.
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
  bool move = false;  // part of a mesh: zmesh clients can move losslessly (INFO "move")
};

class InfoBuilder {
 public:
  explicit InfoBuilder(InfoStatic fields);

  // "INFO {...} \r\n" for one client.
  std::string ForClient(uint64_t client_id, const std::string& client_ip) const;
  // The line without client fields, re-sent to every client when membership
  // or lame duck mode changes.
  std::string Broadcast() const;

  // The node's identity as INFO states it (the port once bound), for
  // monitoring.
  InfoStatic fields() const;

  void set_connect_urls(std::vector<std::string> urls);
  std::vector<std::string> connect_urls() const;
  void set_lame_duck(bool ldm);
  void set_port(int port);

 private:
  void Rebuild();  // requires mu_

  mutable std::mutex mu_;
  InfoStatic fields_;
  std::vector<std::string> connect_urls_;
  bool lame_duck_ = false;
  std::shared_ptr<const proto::InfoLineParts> snapshot_;
};

}  // namespace zmesh::server
