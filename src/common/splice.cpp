#include "ntp/splice.hpp"

#include <memory>
#include <vector>

namespace ntp {
namespace {

constexpr std::size_t kBufferSize = 64 * 1024;

// Buffers are lent only while bytes flow, so thousands of idle streams cost no
// buffer memory. Per thread: each io_context thread has its own free list.
class BufferPool {
 public:
  std::unique_ptr<char[]> take() {
    if (free_.empty()) return std::make_unique_for_overwrite<char[]>(kBufferSize);
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<char[]> b) {
    if (free_.size() < 64) free_.push_back(std::move(b));
  }

 private:
  std::vector<std::unique_ptr<char[]>> free_;
};

thread_local BufferPool buffer_pool;

struct Lease {
  std::unique_ptr<char[]> buf = buffer_pool.take();
  ~Lease() { buffer_pool.give(std::move(buf)); }
};

awaitable<std::uint64_t> pump(tcp::socket& from, tcp::socket& to) {
  std::uint64_t total = 0;
  error_code ignored;  // shutdown/close on a socket the peer already closed is fine
  for (;;) {
    auto [wait_ec] = co_await from.async_wait(tcp::socket::wait_read, nothrow);
    if (wait_ec) break;
    Lease lease;
    for (;;) {
      error_code rec;
      std::size_t n = from.read_some(asio::buffer(lease.buf.get(), kBufferSize), rec);
      if (rec == asio::error::would_block || rec == asio::error::try_again) break;
      if (rec == asio::error::eof) {
        to.shutdown(tcp::socket::shutdown_send, ignored);  // half-close
        co_return total;
      }
      if (rec) {
        from.close(ignored);
        to.close(ignored);
        co_return total;
      }
      auto [wec, m] = co_await asio::async_write(to, asio::buffer(lease.buf.get(), n), nothrow);
      if (wec) {
        from.close(ignored);
        to.close(ignored);
        co_return total;
      }
      total += m;
      if (n < kBufferSize) break;  // drained for now: give the buffer back while idle
    }
  }
  // Cancelled or the socket was closed under us (shutdown of the daemon).
  from.close(ignored);
  to.close(ignored);
  co_return total;
}

}  // namespace

awaitable<SpliceResult> splice(tcp::socket& a, tcp::socket& b) {
  error_code ec;
  a.non_blocking(true, ec);
  b.non_blocking(true, ec);
  auto [up, down] = co_await (pump(a, b) && pump(b, a));
  co_return SpliceResult{up, down};
}

}  // namespace ntp
