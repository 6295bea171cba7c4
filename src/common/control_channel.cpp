#include "ntp/control_channel.hpp"

#include <algorithm>
#include <limits>

namespace ntp {

ControlChannel::ControlChannel(Stream stream)
    : stream_(std::move(stream)), wake_(stream_.socket().get_executor()) {}

void ControlChannel::send(const Message& m) {
  if (closed_) return;
  // A peer that sends but never reads would grow the queue without bound.
  if (queue_.size() >= kMaxQueued) {
    close();
    return;
  }
  queue_.push_back(encode(m));
  wake_.cancel();
}

void ControlChannel::need_data(std::uint32_t n) {
  if (closed_ || n == 0) return;
  if (need_ == 0) {
    queue_.emplace_back();  // where the merged request goes out
    wake_.cancel();
  }
  need_ = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(std::uint64_t{need_} + n, std::numeric_limits<std::uint32_t>::max()));
}

awaitable<error_code> ControlChannel::read(Message& out) {
  auto ec = co_await read_message(stream_, read_buf_, out);
  if (!ec) {
    last_received_ = steady_clock::now();
    ++received_;
  }
  co_return ec;
}

awaitable<error_code> ControlChannel::write_loop() {
  while (!closed_) {
    if (queue_.empty()) {
      wake_.expires_at(steady_clock::time_point::max());
      co_await wake_.async_wait(nothrow);
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return asio::error::operation_aborted;
      continue;
    }
    auto frame = std::move(queue_.front());
    queue_.pop_front();
    if (frame.empty()) {
      const auto take = std::min(need_, kMaxNeedData);
      frame = encode(msg::NeedData{take});
      need_ -= take;
      if (need_ > 0) queue_.emplace_back();  // the rest in the next frame
    }
    if (auto ec = co_await write_frame(stream_, frame)) co_return ec;
  }
  co_return asio::error::operation_aborted;
}

void ControlChannel::close() {
  closed_ = true;
  stream_.close_orderly();
  wake_.cancel();
}

}  // namespace ntp
