// One control connection: messages in, and a queue of messages out written by a
// single writer, so heartbeats, answers and pool requests never interleave a frame.
#pragma once

#include <deque>
#include <string>

#include "ntp/message.hpp"
#include "ntp/stream.hpp"

namespace ntp {

class ControlChannel {
 public:
  static constexpr std::size_t kMaxQueued = 4096;  // messages waiting to be written

  explicit ControlChannel(Stream stream);

  Stream& stream() { return stream_; }
  asio::any_io_executor executor() { return stream_.socket().get_executor(); }
  void send(const Message& m);  // queued; returns at once; closes when the peer stops reading
  // Asks for `n` more data connections. Requests not yet written merge into one
  // need_data, so a burst of users costs one queued frame, never one each: users
  // arriving can never fill the queue and close the session.
  void need_data(std::uint32_t n);
  awaitable<error_code> read(Message& out);  // one message; records when it came
  awaitable<error_code> write_loop();        // until an error, close() or cancellation
  void close();

  steady_clock::time_point last_received() const { return last_received_; }
  std::uint64_t messages_received() const { return received_; }

 private:
  Stream stream_;
  std::deque<std::string> queue_;  // an empty entry stands for the merged need_data
  std::uint32_t need_ = 0;         // data connections asked for and not yet written
  asio::steady_timer wake_;        // the writer sleeps on it; send() and close() cancel it
  std::string read_buf_;
  steady_clock::time_point last_received_ = steady_clock::now();
  std::uint64_t received_ = 0;
  bool closed_ = false;
};

}  // namespace ntp
