// The TLS engine of a build without OpenSSL: a context cannot be made, so
// no session ever exists; every entry point says what is missing.
#include "tls/context.h"
#include "tls/session.h"

namespace aiocomm::tls {
namespace {

constexpr const char* missing =
    "aiocomm was built without OpenSSL (install libssl-dev and rebuild)";

}  // namespace

bool available() noexcept { return false; }

struct Context::Handles {};
Context::Context(Key, Config config, std::unique_ptr<Handles> handles)
    : config_(std::move(config)), handles_(std::move(handles)) {}
Context::~Context() = default;
std::shared_ptr<const Context> Context::create(const Config&) { throw Error(missing); }

struct Session::Handles {};
Session::Session(std::shared_ptr<const Context>, Role, const std::string&) { throw Error(missing); }
Session::~Session() = default;
Session::Status Session::fail(int, const char*) { return Status::failed; }
Session::Status Session::handshake() { return Status::failed; }
bool Session::handshake_done() const noexcept { return false; }
bool Session::feed(std::span<const std::uint8_t>) { return false; }
std::span<const std::uint8_t> Session::output() { return {}; }
void Session::consume_output(std::size_t) {}
bool Session::has_output() { return false; }
void Session::take_output(std::vector<std::uint8_t>&) {}
Session::ReadResult Session::read(std::span<std::uint8_t>) { return {Status::failed, 0}; }
bool Session::write(std::span<const std::uint8_t>) { return false; }
bool Session::buffered() const noexcept { return false; }
bool Session::close() { return false; }
bool Session::peer_closed() const noexcept { return false; }
std::string Session::protocol() const { return {}; }
std::string Session::cipher() const { return {}; }
PeerInfo Session::peer_info() const { return {}; }

}  // namespace aiocomm::tls
