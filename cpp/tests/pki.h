// The test PKI of the C++ tests: tests/make_test_certs.sh run once per
// process into a temporary directory, removed at exit.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace aiocomm::tests {

inline const std::string& pki() {
  struct TempDir {
    std::string path;
    ~TempDir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const TempDir dir{[] {
    auto path = std::filesystem::temp_directory_path() /
                ("aiocomm-tls-" + std::to_string(::getpid()));
    std::string command = std::string("sh '") + AIOCOMM_SOURCE_DIR +
                          "/tests/make_test_certs.sh' '" + path.string() + "'";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("make_test_certs.sh failed");
    return path.string();
  }()};
  return dir.path;
}

// A file of the PKI: "ca.pem", "server.pem", "server.key", ...
inline std::string pki_file(const char* name) { return pki() + "/" + name; }

}  // namespace aiocomm::tests
