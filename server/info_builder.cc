#include "server/info_builder.h"

namespace zmesh::server {

InfoBuilder::InfoBuilder(InfoStatic fields) : fields_(std::move(fields)) {
  std::lock_guard<std::mutex> lock(mu_);
  Rebuild();
}

void InfoBuilder::Rebuild() {
  proto::Info info;
  info.server_id = fields_.server_id;
  info.server_name = fields_.server_name;
  info.version = fields_.version;
  info.proto = 1;  // we send INFO updates (connect_urls, ldm)
  info.host = fields_.host;
  info.port = fields_.port;
  info.headers = true;
  info.auth_required = fields_.auth_required;
  info.tls_required = fields_.tls_required;
  info.tls_verify = fields_.tls_verify;
  info.max_payload = fields_.max_payload;
  // Like nats-server, no connect_urls at all rather than an empty list.
  if (!connect_urls_.empty()) info.connect_urls = connect_urls_;
  info.lame_duck = lame_duck_;
  info.zmesh_version = fields_.zmesh_version;
  info.move = fields_.move;
  snapshot_ = std::make_shared<const proto::InfoLineParts>(proto::EncodeInfoLineParts(info));
}

std::string InfoBuilder::ForClient(uint64_t client_id, const std::string& client_ip) const {
  std::shared_ptr<const proto::InfoLineParts> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = snapshot_;
  }
  return proto::JoinInfoLine(*s, client_id, client_ip);
}

std::string InfoBuilder::Broadcast() const {
  std::lock_guard<std::mutex> lock(mu_);
  return proto::JoinInfoLine(*snapshot_, 0, {});
}

InfoStatic InfoBuilder::fields() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fields_;
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
