// What the server keeps in its state directory when the configuration does not
// provide it: the generated token and the generated TLS certificate.
#pragma once

#include <filesystem>
#include <string>

namespace ntp {

// $STATE_DIRECTORY (first entry) under systemd, else ~/.local/state/ntp-server/.
std::filesystem::path state_directory();

struct StoredToken {
  std::string token;
  std::filesystem::path file;
  bool generated = false;  // true only on the run that created it
};

// Reads `dir`/token, or creates it (mode 0600, directory 0700) with a fresh random
// token. Throws std::runtime_error naming the path on failure.
StoredToken load_or_create_token(const std::filesystem::path& dir);

struct StoredCertificate {
  std::filesystem::path cert, key;  // tls-cert.pem, tls-key.pem (0600)
  bool generated = false;           // true only on the run that created them
};

// The server's self-signed certificate in `dir`, created once. Throws
// std::runtime_error naming the path on failure.
StoredCertificate load_or_create_certificate(const std::filesystem::path& dir);

}  // namespace ntp
