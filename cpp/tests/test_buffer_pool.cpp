// The buffer pool: reuse within a size class, the retention bound, messages
// that give their storage back wherever they die, and use from two threads.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "check.h"
#include "core/buffer_pool.h"

using aiocomm::core::BufferPool;
using aiocomm::protocol::Bytes;

TEST(buffer_pool_reuses_a_buffer_of_the_same_class) {
  auto pool = std::make_shared<BufferPool>();
  auto first = pool->take(4000);
  CHECK(first.capacity() >= 4000);
  first.assign(4000, 7);
  const auto* storage = first.data();
  pool->give(std::move(first));
  CHECK_EQ(pool->retained_buffers(), 1u);
  // Any request of the 4 KiB class gets the same storage back, emptied.
  auto second = pool->take(3000);
  CHECK(second.data() == storage);
  CHECK(second.empty());
  CHECK(second.capacity() >= 4000);
  CHECK_EQ(pool->retained_buffers(), 0u);
}

TEST(buffer_pool_never_serves_a_buffer_smaller_than_asked) {
  auto pool = std::make_shared<BufferPool>();
  for (std::size_t size : {1024u, 1025u, 2048u, 2049u, 4096u, 40000u, 65536u}) {
    auto buffer = pool->take(size);
    CHECK(buffer.capacity() >= size);
    pool->give(std::move(buffer));
  }
  for (std::size_t size : {1024u, 1025u, 2048u, 2049u, 4096u, 40000u, 65536u}) {
    CHECK(pool->take(size).capacity() >= size);
  }
}

TEST(buffer_pool_leaves_small_and_huge_buffers_to_malloc) {
  auto pool = std::make_shared<BufferPool>();
  pool->give(pool->take(100));
  pool->give(pool->take(1 << 20));
  Bytes grown;
  grown.reserve(300 * 1024);
  pool->give(std::move(grown));
  CHECK_EQ(pool->retained_buffers(), 0u);
}

TEST(buffer_pool_retention_is_bounded_per_class) {
  auto pool = std::make_shared<BufferPool>();
  std::vector<Bytes> taken;
  for (int i = 0; i < 1000; ++i) taken.push_back(pool->take(4096));
  for (auto& buffer : taken) pool->give(std::move(buffer));
  CHECK_EQ(pool->retained_bytes(), BufferPool::retained_per_class);
  for (int i = 0; i < 1000; ++i) taken.push_back(pool->take(65536));
  for (auto& buffer : taken) pool->give(std::move(buffer));
  CHECK_EQ(pool->retained_bytes(), 2 * BufferPool::retained_per_class);
}

TEST(buffer_pool_message_gives_its_storage_back_when_released) {
  auto pool = std::make_shared<BufferPool>();
  const std::uint8_t* storage = nullptr;
  {
    auto message = pool->make_message(5000);
    CHECK(message->capacity() >= 5000);
    message->assign(5000, 1);
    storage = message->data();
    std::shared_ptr<const Bytes> shared = message;
    message.reset();
    CHECK_EQ(pool->retained_buffers(), 0u);  // still owned
  }
  CHECK_EQ(pool->retained_buffers(), 1u);
  CHECK(pool->take(5000).data() == storage);
  // Small messages are plain allocations and never enter the pool.
  pool->make_message(64).reset();
  CHECK_EQ(pool->retained_buffers(), 0u);
}

TEST(buffer_pool_message_outlives_its_pool_owner) {
  std::shared_ptr<Bytes> message;
  {
    auto pool = std::make_shared<BufferPool>();
    message = pool->make_message(8192);
  }
  message->assign(8192, 3);  // the message keeps the pool alive
  CHECK_EQ(message->size(), 8192u);
}

TEST(buffer_pool_is_shared_by_a_producer_and_a_consumer_thread) {
  // The reactor takes bodies, the loop gives them back: run that shape
  // (under TSan in CI).
  auto pool = std::make_shared<BufferPool>();
  constexpr int rounds = 20000;
  std::vector<std::shared_ptr<Bytes>> handed(rounds);
  std::atomic<int> ready{0};
  std::thread producer([&] {
    for (int i = 0; i < rounds; ++i) {
      auto message = pool->make_message(2000 + static_cast<std::size_t>(i % 3000));
      message->assign(message->capacity(), static_cast<std::uint8_t>(i));
      handed[static_cast<std::size_t>(i)] = std::move(message);
      ready.store(i + 1, std::memory_order_release);
    }
  });
  int corrupt = 0;
  // Compared with memcmp, not byte by byte: the same reads (TSan checks the
  // range), but a byte loop under TSan made this test take up to 17 s on a
  // loaded 2-core machine, against the runner's 30 s watchdog.
  std::vector<std::uint8_t> expected;
  for (int i = 0; i < rounds; ++i) {
    while (ready.load(std::memory_order_acquire) <= i) std::this_thread::yield();
    auto message = std::move(handed[static_cast<std::size_t>(i)]);
    if (expected.size() < message->size()) expected.resize(message->size());
    std::memset(expected.data(), static_cast<std::uint8_t>(i), message->size());
    corrupt += std::memcmp(expected.data(), message->data(), message->size()) != 0;
  }
  producer.join();
  CHECK_EQ(corrupt, 0);
  CHECK(pool->retained_bytes() <= 7 * BufferPool::retained_per_class);
}
