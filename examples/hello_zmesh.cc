// A tour of zmesh::Client: connect, subscribe (async and sync), publish,
// request/reply, drain.
//
//   hello_zmesh nats://127.0.0.1:4222             # a static node list
//   hello_zmesh --zk 127.0.0.1:2181 /zmesh/prod   # nodes from ZooKeeper
//
// Exits 0 when every step worked.

#include <zmesh/client.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  zmesh::Options options;
  if (argc >= 3 && std::strcmp(argv[1], "--zk") == 0) {
    options.zk_connect = argv[2];
    if (argc >= 4) options.zk_root = argv[3];
  } else if (argc >= 2) {
    options.servers = {argv[1]};
  } else {
    std::fprintf(stderr, "usage: hello_zmesh nats://HOST:PORT | --zk HOST:PORT [ROOT]\n");
    return 2;
  }
  options.name = "hello_zmesh";
  options.on_event = [](const zmesh::Event& e) {
    std::fprintf(stderr, "event: %s %s\n", std::string(zmesh::EventTypeName(e.type)).c_str(), e.url.c_str());
  };

  std::unique_ptr<zmesh::Client> client;
  zmesh::Status st = zmesh::Client::Connect(options, &client);
  if (!st.ok()) {
    std::fprintf(stderr, "connect: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("connected to %s\n", client->connected_url().c_str());

  // Async subscription: the handler runs on the client's dispatcher thread.
  std::atomic<int> greetings{0};
  std::shared_ptr<zmesh::Subscription> async_sub;
  st = client->Subscribe("hello.>", [&](zmesh::Message m) {
    std::printf("async: %.*s on %.*s\n", static_cast<int>(m.data().size()), m.data().data(),
                static_cast<int>(m.subject().size()), m.subject().data());
    ++greetings;
  }, &async_sub);
  if (!st.ok()) return 1;

  // Sync subscription: read with NextMsg.
  std::shared_ptr<zmesh::Subscription> sync_sub;
  if (!client->SubscribeSync("hello.world", &sync_sub).ok()) return 1;

  // A responder, for request/reply.
  zmesh::Client* raw = client.get();
  std::shared_ptr<zmesh::Subscription> service;
  st = client->Subscribe("svc.greet", [raw](zmesh::Message req) {
    raw->Publish(req.reply(), "hello, " + std::string(req.data()));
  }, &service);
  if (!st.ok()) return 1;

  if (!client->Publish("hello.world", "hi there").ok()) return 1;
  zmesh::Message msg;
  st = sync_sub->NextMsg(&msg, std::chrono::seconds(5));
  if (!st.ok()) {
    std::fprintf(stderr, "NextMsg: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("sync: %.*s\n", static_cast<int>(msg.data().size()), msg.data().data());

  zmesh::Message reply;
  st = client->Request("svc.greet", "zmesh", std::chrono::seconds(5), &reply);
  if (!st.ok()) {
    std::fprintf(stderr, "request: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("reply: %.*s\n", static_cast<int>(reply.data().size()), reply.data().data());

  st = client->Request("svc.nobody", "x", std::chrono::seconds(5), &reply);
  std::printf("request to nobody: %s\n", st.ToString().c_str());

  // Drain: stop receiving, let callbacks finish, flush, close.
  st = client->Drain(std::chrono::seconds(5));
  if (!st.ok() || greetings.load() != 1) {
    std::fprintf(stderr, "drain: %s, greetings %d\n", st.ToString().c_str(), greetings.load());
    return 1;
  }
  std::printf("done\n");
  return 0;
}
