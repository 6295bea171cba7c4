#include "state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "ntp/auth.hpp"
#include "ntp/tls.hpp"

namespace ntp {
namespace {

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& p) {
  throw std::runtime_error(what + " " + p.string() + ": " + std::strerror(errno));
}

void make_private_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    errno = ec.value();
    fail("cannot create state directory", dir);
  }
  ::chmod(dir.c_str(), 0700);  // best effort: systemd's StateDirectory sets its own mode
}

// Creates `file` (0600) with `content`; false if it exists already. O_EXCL: of two
// servers starting at once, only one writes.
bool create_exclusive(const std::filesystem::path& file, const std::string& content) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return false;
    fail("cannot create", file);
  }
  bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) fail("cannot write", file);
  return true;
}

}  // namespace

std::filesystem::path state_directory() {
  if (const char* s = std::getenv("STATE_DIRECTORY"); s && *s) {
    std::string first(s);
    return first.substr(0, first.find(':'));  // systemd lists several, colon-separated
  }
  const char* home = std::getenv("HOME");
  if (!home || !*home) throw std::runtime_error("cannot find a state directory: HOME is not set");
  return std::filesystem::path(home) / ".local" / "state" / "ntp-server";
}

StoredToken load_or_create_token(const std::filesystem::path& dir) {
  auto file = dir / "token";
  make_private_directory(dir);
  StoredToken created{random_hex(kGeneratedTokenBytes), file, true};
  if (create_exclusive(file, created.token + "\n")) return created;

  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot read", file);
  std::ostringstream ss;
  ss << in.rdbuf();
  auto token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.empty()) throw std::runtime_error(file.string() + ": empty token file");
  return StoredToken{token, file, false};
}

StoredCertificate load_or_create_certificate(const std::filesystem::path& dir) {
  StoredCertificate c{dir / "tls-cert.pem", dir / "tls-key.pem", false};
  make_private_directory(dir);
  // The key is written first and claims the generation; the certificate appears
  // (renamed into place) only once complete, so its presence means both are there.
  if (!std::filesystem::exists(c.cert)) {
    auto pair = generate_self_signed();
    if (create_exclusive(c.key, pair.key_pem)) {
      auto tmp = c.cert;
      tmp += ".tmp";
      std::filesystem::remove(tmp);
      if (!create_exclusive(tmp, pair.cert_pem)) fail("cannot create", tmp);
      std::filesystem::rename(tmp, c.cert);
      c.generated = true;
      return c;
    }
    // Another server is generating them right now: give it a moment.
    for (int i = 0; i < 50 && !std::filesystem::exists(c.cert); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!std::filesystem::exists(c.cert))
      throw std::runtime_error(c.key.string() + " exists without " + c.cert.string() +
                               ": remove it to generate a new certificate");
  }
  return c;
}

}  // namespace ntp
