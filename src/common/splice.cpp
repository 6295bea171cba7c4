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

constexpr std::size_t kPacedRead = 16 * 1024;  // smaller steps keep a limited rate smooth
constexpr auto kPaceStep = std::chrono::milliseconds(100);

// Waits until every bucket allows `n` more bytes; false if the streams closed meanwhile.
awaitable<bool> pace_out(const std::vector<TokenBucket*>& buckets, std::size_t n, Stream& from,
                         Stream& to) {
  steady_clock::duration wait{};
  const auto now = steady_clock::now();
  for (auto* b : buckets) wait = std::max(wait, b->take(n, now));
  // In steps, so a stream closed at shutdown does not sleep on for long.
  for (auto until = now + wait; steady_clock::now() < until;) {
    if (!from.socket().is_open() || !to.socket().is_open()) co_return false;
    const auto step = std::min<steady_clock::duration>(until - steady_clock::now(), kPaceStep);
    if (!co_await sleep_for(step)) co_return false;
  }
  co_return true;
}

awaitable<std::uint64_t> pump(Stream& from, Stream& to, const std::vector<TokenBucket*>& pace) {
  const std::size_t chunk = pace.empty() ? kBufferSize : kPacedRead;
  std::uint64_t total = 0;
  for (;;) {
    if (co_await from.wait_readable()) break;
    Lease lease;
    for (;;) {
      // TLS hands out one record (16 KiB) per read: gather several per write.
      std::size_t n = 0;
      error_code rec;
      do n += from.read_now(asio::buffer(lease.buf.get() + n, chunk - n), rec);
      while (!rec && from.tls() && n < chunk);
      if (n > 0) {
        if ((!pace.empty() && !co_await pace_out(pace, n, from, to)) ||
            co_await to.write_all(asio::buffer(lease.buf.get(), n))) {
          from.close();
          to.close();
          co_return total;
        }
        total += n;
      }
      if (rec == asio::error::would_block || rec == asio::error::try_again) break;
      if (rec == asio::error::eof) {
        co_await to.shutdown_send();  // half-close
        co_return total;
      }
      if (rec) {
        from.close();
        to.close();
        co_return total;
      }
      // A short plain read means the socket is drained for now: give the buffer
      // back while idle instead of paying for a read that would block.
      if (!from.tls() && n < chunk) break;
    }
  }
  // Cancelled or the socket was closed under us (shutdown of the daemon).
  from.close();
  to.close();
  co_return total;
}

}  // namespace

awaitable<SpliceResult> splice(Stream& a, Stream& b, Pace pace) {
  auto [up, down] = co_await (pump(a, b, pace.a_to_b) && pump(b, a, pace.b_to_a));
  co_return SpliceResult{up, down};
}

}  // namespace ntp
