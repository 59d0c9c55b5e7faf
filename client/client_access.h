#pragma once

// Builds a zmesh::Client on an Engine configured with test hooks (fake
// discovery), so unit tests drive the failover logic through the public API,
// and reaches internal entry points (planned moves) that are not API yet.
//
// Thread safety: as Client::Connect.

#include <memory>

#include <zmesh/client.h>

#include "client/engine.h"

namespace zmesh::client {

struct ClientAccess {
  static Status Connect(Options options, Engine::Hooks hooks, std::unique_ptr<Client>* out) {
    auto engine = std::make_shared<Engine>(std::move(options), std::move(hooks));
    Status st = engine->Start();
    if (!st.ok()) return st;
    out->reset(new Client(std::move(engine)));
    return Status::Ok();
  }
  // The internal entry point of planned moves (Engine::RequestMove).
  static Status RequestMove(Client* client, const std::string& url) { return client->engine_->RequestMove(url); }
};

}  // namespace zmesh::client
