// Hooks for nabla's own tests, to provoke what a test cannot bring about from outside. Internal:
// not installed, not in nabla.h. Not thread-safe to set; set them in a test, then clear them.
#pragma once

#include <nabla/export.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace nabla::test_hooks {

// When set, save_safetensors calls it with the temporary file's path and the target's, just
// before the rename (to provoke a failed rename). nullptr clears it.
NABLA_INTERNAL_API void set_save_before_rename_hook(std::function<void(const std::string& tmp, const std::string& target)> hook);

// Gives the CPU backend's cache of freed large blocks (cpu/backend.cpp) back to the system, so
// that the next large allocation is a fresh one that an allocation watch sees.
NABLA_INTERNAL_API void release_cpu_block_cache();
// The bytes that cache holds now.
NABLA_INTERNAL_API size_t cpu_block_cache_bytes();

// CPU allocations of more than `bytes` fail as if the system had refused them (an
// OutOfMemoryError), so that a test can run out of memory at a size it chooses, on any machine.
// SIZE_MAX (the default) clears it.
NABLA_INTERNAL_API void set_cpu_allocation_limit(size_t bytes);

// nabla::dist's MPI engine moves at most `elements` elements per MPI call (INT_MAX, MPI's
// limit, by default), so that a test reaches the chunked path without 8 GiB tensors. 0 clears it.
NABLA_INTERNAL_API void set_dist_max_chunk(int64_t elements);

}  // namespace nabla::test_hooks
