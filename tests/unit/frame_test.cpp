#include "ntp/frame.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../support/test_support.hpp"

namespace ntp {
namespace {

using namespace test;

PrefixState check(std::string_view seen) {
  return check_prefix({seen.data(), seen.size()});
}

TEST(Prefix, ClientPrefixIsMagicAndVersion) {
  auto p = client_prefix();
  EXPECT_EQ(std::string(p.data(), p.size()), std::string("NTPT\x01", 5));
  EXPECT_EQ(kPrefixSize, 5u);
}

TEST(Prefix, IncompleteUntilAllFiveBytesAreSeen) {
  const auto p = client_prefix();
  for (std::size_t n = 0; n < kPrefixSize; ++n)
    EXPECT_EQ(check_prefix({p.data(), n}), PrefixState::incomplete) << n << " bytes";
  EXPECT_EQ(check_prefix({p.data(), p.size()}), PrefixState::ok);
}

TEST(Prefix, BadMagicAtTheFirstWrongByte) {
  EXPECT_EQ(check("G"), PrefixState::bad_magic);
  EXPECT_EQ(check("GET / HTTP/1.1"), PrefixState::bad_magic);
  EXPECT_EQ(check("N"), PrefixState::incomplete);
  EXPECT_EQ(check("NX"), PrefixState::bad_magic);
  EXPECT_EQ(check("NTX"), PrefixState::bad_magic);
  EXPECT_EQ(check("NTPX"), PrefixState::bad_magic);
  EXPECT_EQ(check("ntpt\x01"), PrefixState::bad_magic);  // case matters
  EXPECT_EQ(check(std::string_view("\0", 1)), PrefixState::bad_magic);
  EXPECT_EQ(check("\x16\x03\x01"), PrefixState::bad_magic);  // a TLS ClientHello
}

TEST(Prefix, RightMagicOtherVersion) {
  EXPECT_EQ(check("NTPT\x02"), PrefixState::bad_version);
  EXPECT_EQ(check(std::string_view("NTPT\0", 5)), PrefixState::bad_version);
  EXPECT_EQ(check("NTPT\xff"), PrefixState::bad_version);
  EXPECT_EQ(check("NTPT\x01"), PrefixState::ok);
}

TEST(Frame, HeaderIsBigEndianLength) {
  EXPECT_EQ(frame_header(0), (std::array<unsigned char, 4>{0, 0, 0, 0}));
  EXPECT_EQ(frame_header(0x01020304), (std::array<unsigned char, 4>{1, 2, 3, 4}));
  EXPECT_EQ(frame_header(kMaxFrame), (std::array<unsigned char, 4>{0, 1, 0, 0}));
}

TEST(Frame, ProtocolErrorsAreErrorCodes) {
  error_code ec = ProtocolError::frame_too_large;
  EXPECT_EQ(ec.category().name(), std::string("ntp"));
  EXPECT_EQ(ec.message(), "frame larger than 64 KiB");
  EXPECT_TRUE(ec == ProtocolError::frame_too_large);
  EXPECT_FALSE(ec == ProtocolError::bad_magic);
  EXPECT_EQ(error_code(ProtocolError::bad_magic).message(), "not an ntp client (bad magic)");
}

// A connected loopback pair; `writer` is the peer, `reader` the side under test.
class FrameIo : public ::testing::Test {
 protected:
  asio::io_context io;
  SocketPair pair = tcp_pair(io);
  tcp::socket& writer = pair.client;
  tcp::socket& reader = pair.server;
};

// Writes `chunks` one by one with a pause between them driven by the io_context,
// so the reader sees the data arrive piecemeal.
awaitable<void> write_slowly(tcp::socket& s, std::vector<std::string> chunks, bool& all_written) {
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (i + 1 == chunks.size()) all_written = true;
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(chunks[i]), nothrow);
    EXPECT_FALSE(ec) << ec.message();
    co_await sleep_for(5ms);
  }
}

TEST_F(FrameIo, RoundTripSeveralFrames) {
  const std::vector<std::string> bodies{R"({"type":"ping"})", "", std::string(1000, 'x'),
                                        std::string("\0\x01\xff", 3)};
  std::vector<std::string> got;
  std::vector<error_code> errors;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    for (auto& b : bodies) errors.push_back(co_await write_frame(writer, b));
    std::string body;  // one buffer, reused as the daemons do
    for (std::size_t i = 0; i < bodies.size(); ++i) {
      errors.push_back(co_await read_frame(reader, body));
      got.push_back(body);
    }
  })) << "frames not read back";
  for (auto& ec : errors) EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(got, bodies);
}

TEST_F(FrameIo, PartialReadsAcrossHeaderAndBody) {
  const std::string body = R"({"type":"challenge","nonce":"00112233"})";
  auto hdr = frame_header(body.size());
  const std::string h(reinterpret_cast<const char*>(hdr.data()), hdr.size());
  // The header split 1+2+1, the body in three pieces.
  std::vector<std::string> chunks{h.substr(0, 1),    h.substr(1, 2),     h.substr(3, 1),
                                  body.substr(0, 5), body.substr(5, 20), body.substr(25)};
  bool all_written = false, read_before_end = false;
  std::string got;
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    auto read = [&]() -> awaitable<void> {
      ec = co_await read_frame(reader, got);
      read_before_end = !all_written;
    };
    co_await (read() && write_slowly(writer, chunks, all_written));
  })) << "frame written in pieces was not read";
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(read_before_end) << "read_frame returned before the last piece was written";
  EXPECT_EQ(got, body);
}

TEST_F(FrameIo, ExactlyMaxFrameIsAccepted) {
  const std::string body = pattern(kMaxFrame, 1);
  std::string got;
  error_code wec, rec;
  // Concurrently: 64 KiB may be more than the socket buffers hold.
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    auto w = [&]() -> awaitable<void> { wec = co_await write_frame(writer, body); };
    auto r = [&]() -> awaitable<void> { rec = co_await read_frame(reader, got); };
    co_await (w() && r());
  })) << "64 KiB frame not transferred";
  EXPECT_FALSE(wec) << wec.message();
  EXPECT_FALSE(rec) << rec.message();
  EXPECT_TRUE(got == body) << "64 KiB body corrupted, size " << got.size();
}

TEST_F(FrameIo, WriterRefusesOversizedFrame) {
  const std::string body(kMaxFrame + 1, 'x');
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> { ec = co_await write_frame(writer, body); }));
  EXPECT_EQ(ec, make_error_code(ProtocolError::frame_too_large));
  // Nothing reached the wire.
  EXPECT_EQ(reader.available(), 0u);
}

TEST_F(FrameIo, ReaderRefusesOversizedFrameFromTheHeaderAlone) {
  auto hdr = frame_header(kMaxFrame + 1);
  asio::write(writer, asio::buffer(hdr));  // only the header: the body never comes
  std::string got;
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_frame(reader, got); }, 2s))
      << "read_frame waited for a body it should have refused";
  EXPECT_EQ(ec, make_error_code(ProtocolError::frame_too_large));
  EXPECT_LE(got.capacity(), kMaxFrame) << "buffer grown for a refused frame";
}

TEST_F(FrameIo, HugeLengthIsRefused) {
  const unsigned char hdr[4] = {0xff, 0xff, 0xff, 0xff};
  asio::write(writer, asio::buffer(hdr));
  std::string got;
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_frame(reader, got); }, 2s));
  EXPECT_EQ(ec, make_error_code(ProtocolError::frame_too_large));
}

TEST_F(FrameIo, TruncatedBodyIsEof) {
  auto hdr = frame_header(100);
  asio::write(writer, asio::buffer(hdr));
  asio::write(writer, asio::buffer(std::string(10, 'x')));
  writer.close();
  std::string got;
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_frame(reader, got); }, 2s));
  EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(FrameIo, TruncatedHeaderIsEof) {
  asio::write(writer, asio::buffer(std::string("\0\0", 2)));
  writer.close();
  std::string got;
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_frame(reader, got); }, 2s));
  EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(FrameIo, ReadPrefixAcceptsAPrefixArrivingByteByByte) {
  const auto p = client_prefix();
  std::vector<std::string> chunks;
  for (char c : p) chunks.emplace_back(1, c);
  bool all_written = false;
  std::uint8_t version = 0;
  error_code ec;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    auto read = [&]() -> awaitable<void> { ec = co_await read_prefix(reader, version); };
    co_await (read() && write_slowly(writer, chunks, all_written));
  }));
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(version, kProtocolVersion);
}

TEST_F(FrameIo, ReadPrefixDoesNotConsumeTheFirstFrame) {
  // The prefix and the first frame in one segment: the frame must still be there.
  const auto p = client_prefix();
  const std::string body = R"({"type":"ping"})";
  auto hdr = frame_header(body.size());
  std::string wire(p.data(), p.size());
  wire.append(reinterpret_cast<const char*>(hdr.data()), hdr.size());
  wire += body;
  asio::write(writer, asio::buffer(wire));
  std::uint8_t version = 0;
  error_code pec, fec;
  std::string got;
  ASSERT_TRUE(run(io, [&]() -> awaitable<void> {
    pec = co_await read_prefix(reader, version);
    fec = co_await read_frame(reader, got);
  }));
  EXPECT_FALSE(pec) << pec.message();
  EXPECT_FALSE(fec) << fec.message();
  EXPECT_EQ(got, body);
}

TEST_F(FrameIo, ReadPrefixRefusesAtTheFirstWrongByte) {
  // One wrong byte and the connection stays open: read_prefix must not wait for five.
  asio::write(writer, asio::buffer(std::string("G")));
  std::uint8_t version = 0;
  error_code ec;
  // Only one byte comes: a read_prefix that waited for more would never return.
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_prefix(reader, version); }, 2s))
      << "read_prefix waited for more bytes after a wrong first byte";
  EXPECT_EQ(ec, make_error_code(ProtocolError::bad_magic));
}

TEST_F(FrameIo, ReadPrefixRefusesAWrongByteAfterAGoodStart) {
  std::vector<std::string> chunks{"N", "T", "X"};
  bool all_written = false;
  std::uint8_t version = 0;
  error_code ec;
  ASSERT_TRUE(run(
      io,
      [&]() -> awaitable<void> {
        auto read = [&]() -> awaitable<void> { ec = co_await read_prefix(reader, version); };
        co_await (read() && write_slowly(writer, chunks, all_written));
      },
      2s));
  EXPECT_EQ(ec, make_error_code(ProtocolError::bad_magic));
}

TEST_F(FrameIo, ReadPrefixReportsTheOtherVersion) {
  asio::write(writer, asio::buffer(std::string("NTPT\x07")));
  std::uint8_t version = 0;
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_prefix(reader, version); }, 2s));
  EXPECT_EQ(ec, make_error_code(ProtocolError::bad_version));
  EXPECT_EQ(version, 7);
}

TEST_F(FrameIo, ReadPrefixSeesEofOfAShortPrefix) {
  asio::write(writer, asio::buffer(std::string("NTP")));
  writer.close();
  std::uint8_t version = 0;
  error_code ec;
  ASSERT_TRUE(run(
      io, [&]() -> awaitable<void> { ec = co_await read_prefix(reader, version); }, 2s));
  EXPECT_EQ(ec, asio::error::eof);
}

}  // namespace
}  // namespace ntp
