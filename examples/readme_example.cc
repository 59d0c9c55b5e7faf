#include <zmesh/client.h>

#include <cstdio>
#include <string>

int main() {
  zmesh::Options options;
  options.zk_connect = "127.0.0.1:2181";  // nodes are read from <zk_root>/nodes
  options.zk_root = "/zmesh/prod";        // and cached for when ZooKeeper is down
  // options.servers = {"nats://127.0.0.1:4222"};  // or a static list

  std::unique_ptr<zmesh::Client> client;
  zmesh::Status st = zmesh::Client::Connect(options, &client);
  if (!st.ok()) {
    std::fprintf(stderr, "connect: %s\n", st.ToString().c_str());
    return 1;
  }

  // Callbacks run on the client's dispatcher thread; subscriptions survive failover.
  std::shared_ptr<zmesh::Subscription> sub;
  client->QueueSubscribe("orders.*", "billing", [](zmesh::Message m) {
    std::printf("%s: %s\n", std::string(m.subject()).c_str(), std::string(m.data()).c_str());
  }, &sub);

  client->Publish("orders.new", R"({"id":42})");  // buffered while failing over

  zmesh::Message reply;
  st = client->Request("inventory.check", "sku-1", std::chrono::seconds(2), &reply);
  if (st.code() == zmesh::StatusCode::kNoResponders) std::puts("nobody serves inventory.check");

  client->Drain(std::chrono::seconds(5));  // deliver what arrived, flush, close
}
