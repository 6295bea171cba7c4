#include "ntp/daemon.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ntp/auth.hpp"

namespace ntp {
namespace {

class ExposureWarning : public ::testing::Test {
 protected:
  ExposureWarning() { std::filesystem::create_directories(dir); }
  ~ExposureWarning() override { std::filesystem::remove_all(dir); }
  std::filesystem::path secret(mode_t mode) {
    auto f = dir / "server.json";
    std::ofstream(f) << R"({"token":"0123456789abcdef"})";
    ::chmod(f.c_str(), mode);
    return f;
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("ntp-test-" + random_hex(8));
};

TEST_F(ExposureWarning, APrivateFileIsFine) {
  EXPECT_EQ(exposure_warning(secret(0600)), std::nullopt);
  EXPECT_EQ(exposure_warning(secret(0400)), std::nullopt);
}

TEST_F(ExposureWarning, WorldBitsNameTheFix) {
  auto f = secret(0644);
  EXPECT_EQ(exposure_warning(f),
            f.string() + " holds a secret and other users can read it (mode 0644): chmod o-rwx " +
                f.string());
}

// The packaged layout, 0640 root:ntp-tunnel, is fine for the daemon in that
// group; group bits of a group it is not in are not.
TEST_F(ExposureWarning, GroupBitsOnlyForAnotherGroup) {
  auto f = secret(0640);
  ASSERT_EQ(::chown(f.c_str(), static_cast<uid_t>(-1), ::getegid()), 0);
  EXPECT_EQ(exposure_warning(f), std::nullopt);
  if (::chown(f.c_str(), static_cast<uid_t>(-1), 54321) != 0)
    GTEST_SKIP() << "cannot give the file another group (not root)";
  EXPECT_EQ(exposure_warning(f),
            f.string() + " holds a secret and other users can read it (mode 0640): chmod g-rwx " +
                f.string());
  ::chmod(f.c_str(), 0664);
  EXPECT_NE(exposure_warning(f)->find("chmod go-rwx"), std::string::npos);
}

TEST_F(ExposureWarning, NoFileNoWarning) {
  EXPECT_EQ(exposure_warning(dir / "absent"), std::nullopt);
  EXPECT_EQ(exposure_warning(dir), std::nullopt) << "a directory is not a secret file";
}

}  // namespace
}  // namespace ntp
