#include "ntp/splice.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <memory>
#include <vector>

namespace ntp {
namespace {

constexpr std::size_t kBufferSize = 64 * 1024;
constexpr std::size_t kPooledBuffers = 64;  // free buffers kept per thread
constexpr std::size_t kPooledPipes = 16;    // free pipes kept per thread (two descriptors each)
// Pipe capacity asked for: 256 KiB moved 1-16 streams 5-15% faster than the
// default 64 KiB on loopback; 1 MiB no faster again, and pipes past the user's
// pipe-user-pages-soft quota would be cut to one page.
constexpr int kPipeSize = 256 * 1024;

// Buffers and pipes are lent only while bytes flow, so thousands of idle streams
// cost neither memory nor descriptors. Per thread: each io_context thread has its
// own free lists.
class BufferPool {
 public:
  std::unique_ptr<char[]> take() {
    if (free_.empty()) return std::make_unique_for_overwrite<char[]>(kBufferSize);
    auto b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void give(std::unique_ptr<char[]> b) {
    if (free_.size() < kPooledBuffers) free_.push_back(std::move(b));
  }

 private:
  std::vector<std::unique_ptr<char[]>> free_;
};

thread_local BufferPool buffer_pool;

struct Lease {
  std::unique_ptr<char[]> buf = buffer_pool.take();
  ~Lease() { buffer_pool.give(std::move(buf)); }
};

// A pipe for splice(2): bytes go socket → pipe → socket as page references.
struct Pipe {
  int read_end = -1, write_end = -1;
  std::size_t capacity = 0;
};

class PipePool {
 public:
  PipePool() = default;
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;
  ~PipePool() {
    for (auto& p : free_) close(p);
  }
  // nullopt when no pipe can be made (out of descriptors): the caller copies instead.
  std::optional<Pipe> take() {
    if (!free_.empty()) {
      auto p = free_.back();
      free_.pop_back();
      ++lent_;
      return p;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return std::nullopt;
    ::fcntl(fds[1], F_SETPIPE_SZ, kPipeSize);  // refused past the quota: keep the default
    const int capacity = ::fcntl(fds[1], F_GETPIPE_SZ);
    ++lent_;
    return Pipe{fds[0], fds[1], capacity > 0 ? static_cast<std::size_t>(capacity) : 4096};
  }
  std::size_t lent() const { return lent_; }
  // Only an empty pipe comes back; one holding bytes of a failed stream is closed.
  void give(Pipe p, bool empty) {
    --lent_;
    if (empty && free_.size() < kPooledPipes)
      free_.push_back(p);
    else
      close(p);
  }

 private:
  static void close(Pipe p) {
    ::close(p.read_end);
    ::close(p.write_end);
  }
  std::vector<Pipe> free_;
  std::size_t lent_ = 0;
};

thread_local PipePool pipe_pool;

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

enum class Moved { drained, eof, failed, write_blocked };

// Moves what `from` has now through a borrowed buffer (TLS, paced, or no pipe).
awaitable<Moved> copy_ready(Stream& from, Stream& to, const std::vector<TokenBucket*>& pace,
                            std::uint64_t& total) {
  const std::size_t chunk = pace.empty() ? kBufferSize : kPacedRead;
  Lease lease;
  for (;;) {
    // TLS hands out one record (16 KiB) per read: gather several per write.
    std::size_t n = 0;
    error_code rec;
    do n += from.read_now(asio::buffer(lease.buf.get() + n, chunk - n), rec);
    while (!rec && from.tls() && n < chunk);
    if (n > 0) {
      if ((!pace.empty() && !co_await pace_out(pace, n, from, to)) ||
          co_await to.write_all(asio::buffer(lease.buf.get(), n)))
        co_return Moved::failed;
      total += n;
    }
    if (rec == asio::error::would_block || rec == asio::error::try_again) co_return Moved::drained;
    if (rec == asio::error::eof) co_return Moved::eof;
    if (rec) co_return Moved::failed;
    // A short plain read means the socket is drained for now: give the buffer
    // back while idle instead of paying for a read that would block.
    if (!from.tls() && n < chunk) co_return Moved::drained;
  }
}

// One direction's borrowed pipe and what it holds. It goes back to the pool
// however the pump ends (an exception, or the coroutine destroyed mid-wait);
// one still holding bytes of a failed stream is closed instead.
struct Piped {
  Pipe pipe;
  std::size_t held = 0;  // bytes in the pipe, not yet written on
  bool short_read = false;
  explicit Piped(Pipe p) : pipe(p) {}
  Piped(const Piped&) = delete;
  Piped& operator=(const Piped&) = delete;
  ~Piped() { pipe_pool.give(pipe, held == 0); }
};

// The same with splice(2): socket → pipe → socket, no byte copied into this
// process. A plain function, not a coroutine: the common case (bytes in, bytes
// out, drained) never waits, so it costs no coroutine frame per wake-up.
// write_blocked: `to` cannot take the pipe's bytes yet; call again once writable.
Moved splice_now(Stream& from, Stream& to, Piped& p, std::uint64_t& total, std::uint64_t& piped) {
  constexpr unsigned kFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  for (;;) {
    while (p.held > 0) {
      // A closed socket's descriptor number may belong to something else by now.
      if (!to.socket().is_open()) return Moved::failed;
      const auto m =
          ::splice(p.pipe.read_end, nullptr, to.socket().native_handle(), nullptr, p.held, kFlags);
      if (m > 0) {
        p.held -= static_cast<std::size_t>(m);
        total += static_cast<std::uint64_t>(m);
        piped += static_cast<std::uint64_t>(m);
      } else if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return Moved::write_blocked;
      } else {
        return Moved::failed;
      }
    }
    // A short read means the socket is drained for now, as in copy_ready.
    if (p.short_read) return Moved::drained;
    if (!from.socket().is_open() || !to.socket().is_open()) return Moved::failed;
    const auto n = ::splice(from.socket().native_handle(), nullptr, p.pipe.write_end, nullptr,
                            p.pipe.capacity, kFlags);
    if (n == 0) return Moved::eof;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? Moved::drained : Moved::failed;
    p.held = static_cast<std::size_t>(n);
    p.short_read = p.held < p.pipe.capacity;
  }
}

// splice_now's rest, each time `to` turns writable again.
awaitable<Moved> splice_when_writable(Stream& from, Stream& to, Piped& p, std::uint64_t& total,
                                      std::uint64_t& piped) {
  auto moved = Moved::write_blocked;
  while (moved == Moved::write_blocked) {
    auto [ec] = co_await to.socket().async_wait(tcp::socket::wait_write, nothrow);
    moved = ec ? Moved::failed : splice_now(from, to, p, total, piped);
  }
  co_return moved;
}

// Writes `lead`, and behind it in the same write what `from` sends within the
// lead's hold. False if a write failed.
awaitable<bool> send_lead(Stream& from, Stream& to, const Lead& lead,
                          const std::vector<TokenBucket*>& pace, std::uint64_t& total,
                          std::uint64_t& with_frames) {
  const auto k = lead.bytes.size();
  const std::size_t chunk = pace.empty() ? kBufferSize : kPacedRead;
  if (k >= chunk) co_return !co_await to.write_all(asio::buffer(lead.bytes));
  auto ready = co_await with_timeout(from.wait_readable(), lead.hold);
  Lease lease;  // after the wait: a stream on hold borrows nothing
  std::memcpy(lease.buf.get(), lead.bytes.data(), k);
  std::size_t n = 0;
  if (ready && !*ready) {
    error_code ignored;  // eof or an error: the pump's loop meets it again
    n = from.read_now(asio::buffer(lease.buf.get() + k, chunk - k), ignored);
    if (n > 0 && !pace.empty() && !co_await pace_out(pace, n, from, to)) co_return false;
  }
  if (co_await to.write_all(asio::buffer(lease.buf.get(), k + n))) co_return false;
  total += n;
  with_frames += n;
  co_return true;
}

// How a splice's bytes went, over both pumps.
struct Moves {
  std::uint64_t piped = 0, with_frames = 0;
};

awaitable<std::uint64_t> pump(Stream& from, Stream& to, const std::vector<TokenBucket*>& pace,
                              SpliceMode mode, Moves& moves, const Lead* lead) {
  const bool zero_copy = mode == SpliceMode::zero_copy && !from.tls() && !to.tls() && pace.empty();
  std::uint64_t total = 0;
  if (lead && !co_await send_lead(from, to, *lead, pace, total, moves.with_frames)) {
    from.close();
    to.close();
    co_return total;
  }
  for (;;) {
    // Bytes the stream read ahead (behind a frame) are in memory already: copy them.
    const bool by_pipe = zero_copy && !from.has_buffered();
    if (by_pipe) {  // the socket itself, without Stream's coroutine around the wait
      auto [ec] = co_await from.socket().async_wait(tcp::socket::wait_read, nothrow);
      if (ec) break;
    } else if (co_await from.wait_readable()) {
      break;
    }
    std::optional<Pipe> pipe;
    if (by_pipe) pipe = pipe_pool.take();
    auto moved = Moved::failed;
    if (pipe) {
      Piped p(*pipe);
      moved = splice_now(from, to, p, total, moves.piped);
      if (moved == Moved::write_blocked)
        moved = co_await splice_when_writable(from, to, p, total, moves.piped);
    } else {
      const bool ahead = from.has_buffered();  // copy_ready then takes just those
      const auto before = total;
      moved = co_await copy_ready(from, to, pace, total);
      if (ahead) moves.with_frames += total - before;
    }
    if (moved == Moved::eof) {
      co_await to.shutdown_send();  // half-close
      co_return total;
    }
    if (moved == Moved::failed) break;
  }
  // A hard error, cancelled, or a socket closed under us (shutdown of the daemon).
  from.close();
  to.close();
  co_return total;
}

}  // namespace

awaitable<SpliceResult> splice(Stream& a, Stream& b, Pace pace, SpliceMode mode, Lead lead) {
  Moves moves;
  const Lead* to_a = lead.bytes.empty() ? nullptr : &lead;
  auto [up, down] = co_await (pump(a, b, pace.a_to_b, mode, moves, nullptr) &&
                              pump(b, a, pace.b_to_a, mode, moves, to_a));
  co_return SpliceResult{up, down, moves.piped, moves.with_frames};
}

std::size_t pipes_lent() {
  return pipe_pool.lent();
}

std::string describe(const SpliceResult& r, steady_clock::duration lasted) {
  return fmt::format("after {:.1f} s, {} bytes in, {} bytes out ({} zero-copy, {} with frames)",
                     std::chrono::duration<double>(lasted).count(), r.a_to_b, r.b_to_a, r.zero_copy,
                     r.with_frames);
}

}  // namespace ntp
