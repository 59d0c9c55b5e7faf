#include "server/info_builder.h"

#include <nlohmann/json.hpp>

namespace zmesh::server {
namespace {
std::string Quote(const std::string& s) { return nlohmann::json(s).dump(); }
}  // namespace

InfoBuilder::InfoBuilder(InfoStatic fields) : fields_(std::move(fields)) {
  std::lock_guard<std::mutex> lock(mu_);
  Rebuild();
}

void InfoBuilder::Rebuild() {
  auto s = std::make_shared<Snapshot>();
  s->head = "INFO {\"server_id\":" + Quote(fields_.server_id) + ",\"server_name\":" + Quote(fields_.server_name) +
            ",\"version\":" + Quote(fields_.version) + ",\"proto\":1,\"host\":" + Quote(fields_.host) +
            ",\"port\":" + std::to_string(fields_.port) + ",\"headers\":true";
  if (fields_.auth_required) s->head += ",\"auth_required\":true";
  if (fields_.tls_required) s->head += ",\"tls_required\":true";
  if (fields_.tls_verify) s->head += ",\"tls_verify\":true";
  s->head += ",\"max_payload\":" + std::to_string(fields_.max_payload);
  if (!connect_urls_.empty()) s->tail += ",\"connect_urls\":" + nlohmann::json(connect_urls_).dump();
  if (lame_duck_) s->tail += ",\"ldm\":true";
  s->tail += ",\"zmesh_version\":" + Quote(fields_.zmesh_version);
  snapshot_ = std::move(s);
}

std::string InfoBuilder::ForClient(uint64_t client_id, const std::string& client_ip) const {
  std::shared_ptr<const Snapshot> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = snapshot_;
  }
  std::string line;
  line.reserve(s->head.size() + s->tail.size() + 64);
  line += s->head;
  line += ",\"client_id\":";
  line += std::to_string(client_id);
  line += ",\"client_ip\":";
  line += Quote(client_ip);
  line += s->tail;
  line += "} \r\n";
  return line;
}

std::string InfoBuilder::Broadcast() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_->head + snapshot_->tail + "} \r\n";
}

void InfoBuilder::set_connect_urls(std::vector<std::string> urls) {
  std::lock_guard<std::mutex> lock(mu_);
  connect_urls_ = std::move(urls);
  Rebuild();
}

std::vector<std::string> InfoBuilder::connect_urls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connect_urls_;
}

void InfoBuilder::set_lame_duck(bool ldm) {
  std::lock_guard<std::mutex> lock(mu_);
  lame_duck_ = ldm;
  Rebuild();
}

void InfoBuilder::set_port(int port) {
  std::lock_guard<std::mutex> lock(mu_);
  fields_.port = port;
  Rebuild();
}

}  // namespace zmesh::server
