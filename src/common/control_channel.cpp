#include "ntp/control_channel.hpp"

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
