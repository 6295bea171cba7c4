#include "token_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ntp/auth.hpp"

namespace ntp {
namespace {

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& p) {
  throw std::runtime_error(what + " " + p.string() + ": " + std::strerror(errno));
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
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    errno = ec.value();
    fail("cannot create state directory", dir);
  }
  ::chmod(dir.c_str(), 0700);  // best effort: systemd's StateDirectory sets its own mode

  // O_EXCL: two servers starting at once cannot both write a different token.
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    StoredToken t{random_hex(24), file, true};
    std::string line = t.token + "\n";
    bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ok = ::fsync(fd) == 0 && ok;
    ::close(fd);
    if (!ok) fail("cannot write", file);
    return t;
  }
  if (errno != EEXIST) fail("cannot create", file);

  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot read", file);
  std::ostringstream ss;
  ss << in.rdbuf();
  auto token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.empty()) throw std::runtime_error(file.string() + ": empty token file");
  return StoredToken{token, file, false};
}

}  // namespace ntp
