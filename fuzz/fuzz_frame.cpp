// libFuzzer target: the frame decoder as the bind port runs it. The prefix
// (check_prefix, read_prefix), then frames (read_frame) decoded into messages
// (read_message), read from an in-memory stream that hands the input out in
// chunks whose sizes also come from the input.
//
// Input layout: byte 0 = n (mod 8), then n chunk sizes (cycled; 0 = all that is
// left), then the bytes the peer sends. So "\0NTPT\1..." is a stream read whole.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>

#include "ntp/frame.hpp"
#include "ntp/message.hpp"

namespace {

namespace asio = ntp::asio;
using ntp::awaitable;
using ntp::error_code;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_frame: %s\n", what);
  std::abort();
}

// An AsyncReadStream over a byte string: each async_read_some returns the next
// chunk (capped by the caller's buffer), completing later through the executor
// as a socket would, and eof once everything was read.
class FuzzStream {
 public:
  using executor_type = asio::any_io_executor;

  FuzzStream(executor_type ex, std::span<const std::uint8_t> chunks,
             std::span<const std::uint8_t> bytes)
      : ex_(std::move(ex)), chunks_(chunks), bytes_(bytes) {}

  executor_type get_executor() const { return ex_; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& bufs) {
          error_code ec;
          std::size_t n = 0;
          if (asio::buffer_size(bufs) == 0) {
            // A zero-size read completes at once with nothing, even at the end.
          } else if (pos_ == bytes_.size()) {
            ec = asio::error::eof;
          } else {
            const std::size_t left = bytes_.size() - pos_;
            n = asio::buffer_copy(bufs, asio::buffer(bytes_.data() + pos_, next_chunk(left)));
            pos_ += n;
          }
          asio::post(ex_, asio::append(std::move(handler), ec, n));
        },
        token, buffers);
  }

 private:
  std::size_t next_chunk(std::size_t left) {
    if (chunks_.empty()) return left;
    const std::size_t c = chunks_[turn_++ % chunks_.size()];
    return c == 0 ? left : std::min(c, left);
  }

  executor_type ex_;
  std::span<const std::uint8_t> chunks_;
  std::span<const std::uint8_t> bytes_;
  std::size_t pos_ = 0;
  std::size_t turn_ = 0;
};

// check_prefix on every leading part of the stream must tell one consistent story.
void check_prefix_states(std::span<const std::uint8_t> bytes) {
  const std::span<const char> seen(reinterpret_cast<const char*>(bytes.data()),
                                   std::min(bytes.size(), ntp::kPrefixSize + 2));
  auto previous = ntp::PrefixState::incomplete;
  for (std::size_t k = 0; k <= seen.size(); ++k) {
    const auto state = ntp::check_prefix(seen.first(k));
    if (previous != ntp::PrefixState::incomplete && state != previous)
      fail("check_prefix changed its verdict on more bytes");
    if (state == ntp::PrefixState::incomplete && k >= ntp::kPrefixSize)
      fail("check_prefix incomplete on a whole prefix");
    if (state == ntp::PrefixState::ok &&
        !std::equal(seen.begin(), seen.begin() + ntp::kPrefixSize, ntp::client_prefix().begin()))
      fail("check_prefix accepted something that is not the client prefix");
    previous = state;
  }
}

bool expected_end(const error_code& ec) {
  return ec == asio::error::eof || ec == ntp::ProtocolError::frame_too_large ||
         ec == ntp::ProtocolError::bad_message;
}

// What CommonServer does with a new connection: the prefix, then messages.
awaitable<void> drive(FuzzStream& s, bool& finished) {
  std::uint8_t version = 0;
  const error_code prefix_ec = co_await ntp::read_prefix(s, version);
  if (prefix_ec) {
    if (prefix_ec != asio::error::eof && prefix_ec != ntp::ProtocolError::bad_magic &&
        prefix_ec != ntp::ProtocolError::bad_version)
      fail("read_prefix ended with an unexpected error");
    if (prefix_ec == ntp::ProtocolError::bad_version && version == ntp::kProtocolVersion)
      fail("read_prefix refused our own version");
    finished = true;
    co_return;
  }
  if (version != ntp::kProtocolVersion) fail("read_prefix accepted another version");
  std::string buf;
  for (int i = 0; i < 1024; ++i) {  // the input is finite; this only bounds a bug
    ntp::Message m;
    const error_code ec = co_await ntp::read_message(s, buf, m);
    if (ec) {
      if (!expected_end(ec)) fail("read_message ended with an unexpected error");
      break;
    }
    if (buf.size() > ntp::kMaxFrame) fail("read_frame returned a frame above kMaxFrame");
  }
  finished = true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t n_chunks = std::min<std::size_t>(data[0] % 8, size - 1);
  const std::span<const std::uint8_t> chunks(data + 1, n_chunks);
  const std::span<const std::uint8_t> bytes(data + 1 + n_chunks, size - 1 - n_chunks);
  check_prefix_states(bytes);

  asio::io_context io;
  FuzzStream stream(io.get_executor(), chunks, bytes);
  bool finished = false;
  asio::co_spawn(io, drive(stream, finished), [](const std::exception_ptr& e) {
    if (e) std::rethrow_exception(e);  // libFuzzer reports the uncaught exception
  });
  io.run();
  if (!finished) fail("the reading coroutine never finished");
  return 0;
}
