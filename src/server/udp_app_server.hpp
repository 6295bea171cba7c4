// UdpAppServer: a udp app's socket on its remote port. Each user address is a
// flow: its datagrams go to the client over a data connection of their own,
// framed (2-byte length, then the datagram), and the client's come back the
// same way and leave from this socket to the user. Per flow a bounded queue: a
// burst on one flow drops its own datagrams (counted) and never delays another.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "app_server.hpp"
#include "ntp/asio.hpp"

namespace ntp {

class UdpAppServer final : public AppServer {
 public:
  using udp = asio::ip::udp;
  // A flow's queue towards the client: at most this many datagrams, or bytes.
  static constexpr std::size_t kQueueDatagrams = 256;
  static constexpr std::size_t kQueueBytes = 1024 * 1024;
  static constexpr std::size_t kMaxDatagram = 65507;  // what fits in one IPv4 UDP datagram
  static constexpr int kReceiveBuffer = 4 * 1024 * 1024;

  // A UDP socket on `ep`, or the error (never SO_REUSEADDR: two groups could
  // then bind one port). Its receive buffer is made large (kReceiveBuffer, as
  // far as the system allows) for bursts, and it reports each datagram's
  // destination address and the kernel's drop count.
  static udp::socket open(const asio::any_io_executor& ex, const udp::endpoint& ep, error_code& ec);

  UdpAppServer(std::string name, udp::socket socket, const std::string& group_context,
               Policy policy);
  ~UdpAppServer() override;

  awaitable<void> run(std::shared_ptr<AppGroup> group) override;
  void close() override;

  std::size_t flows() const { return flows_.size(); }

 private:
  struct Flow;
  struct Received;
  awaitable<void> serve_flow(std::shared_ptr<AppGroup> group, std::shared_ptr<Flow> flow);
  void on_datagram(const std::shared_ptr<AppGroup>& group, const Received& r,
                   const std::vector<TokenBucket*>& up);
  void drop_new(const udp::endpoint& from, const std::string& why);
  void count_kernel_drops(std::uint32_t total);
  // To the user, from the address it sent to (on a wildcard bind the kernel
  // would otherwise pick one by routing); false if not sent.
  bool send_to_user(const char* data, std::size_t n, const udp::endpoint& user,
                    const std::optional<asio::ip::address>& from);

  udp::socket socket_;
  bool wildcard_;                   // bound to 0.0.0.0 or ::
  std::uint32_t kernel_drops_ = 0;  // SO_RXQ_OVFL's count so far
  RateLimit kernel_log_{1, std::chrono::seconds(10)};
  std::map<udp::endpoint, std::shared_ptr<Flow>> flows_;
  std::uint64_t dropped_new_ = 0;                    // datagrams of addresses that got no flow
  RateLimit drop_log_{1, std::chrono::seconds(10)};  // one line, then a count
};

}  // namespace ntp
