// The token a server generates for itself when none is configured.
#pragma once

#include <filesystem>
#include <string>

namespace ntp {

struct StoredToken {
  std::string token;
  std::filesystem::path file;
  bool generated = false;  // true only on the run that created it
};

// $STATE_DIRECTORY (first entry) under systemd, else ~/.local/state/ntp-server/.
std::filesystem::path state_directory();

// Reads `dir`/token, or creates it (mode 0600, directory 0700) with a fresh random
// token. Throws std::runtime_error naming the path on failure.
StoredToken load_or_create_token(const std::filesystem::path& dir);

}  // namespace ntp
