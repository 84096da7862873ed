// The shared, immutable half of TLS: certificates, trust anchors and
// verification rules, for both roles. Built once per configuration (and
// again on a reload); every session of a connection holds the context it
// started with. Thread-safe once built.
#pragma once

#include <memory>

#include "tls/config.h"

namespace aiocomm::tls {

class Context {
 public:
  // Loads the files; throws tls::Error naming the file and OpenSSL's reason
  // (or that the build has no OpenSSL). Blocks on file I/O: any thread.
  static std::shared_ptr<const Context> create(const Config& config);

  // Only create() makes one (the key is private to it).
  class Key {
    friend class Context;
    Key() = default;
  };
  struct Handles;  // the OpenSSL objects (context.cpp); opaque elsewhere
  Context(Key, Config config, std::unique_ptr<Handles> handles);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Config& config() const noexcept { return config_; }
  bool has_certificate() const noexcept { return !config_.certfile.empty(); }

  const Handles& handles() const noexcept { return *handles_; }

 private:
  Config config_;
  std::unique_ptr<Handles> handles_;
};

}  // namespace aiocomm::tls
