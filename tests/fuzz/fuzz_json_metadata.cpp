// libFuzzer target: the safetensors header JSON (tensor entries and __metadata__). See fuzz_inputs.h.
#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nabla_fuzz::run_json_metadata(data, size);
  return 0;
}
