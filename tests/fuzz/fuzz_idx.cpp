// libFuzzer target: the IDX reader (raw and gzip files). See fuzz_inputs.h.
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nabla_fuzz::run_idx(data, size);
  return 0;
}
